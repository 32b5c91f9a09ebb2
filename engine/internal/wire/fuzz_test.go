package wire

// Fuzz targets for every parser a peer can reach. Each checks the parser
// against a small reference written directly over the byte slice (no
// bufio, no quicvarint), so that streaming bugs — partial reads, skipped
// bytes, read-ahead — show up as a difference, and checks round trips
// through the matching encoder. Seeds: f.Add below and testdata/fuzz.

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// refVarint decodes a varint from the start of b (RFC 9000 §16) the slow,
// obvious way. ok is false when b ends inside it.
func refVarint(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0, false
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n, true
}

func FuzzParseDatagram(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x00, 'p'})
	f.Add([]byte{0x40})
	f.Add(cat(varint(MaxQuarterStreamID), varint(1<<62-1), []byte("x")))
	f.Add(cat(varint(1<<60), []byte{0}))
	f.Add(cat(varintN(1, 8), varintN(0, 4)))
	f.Fuzz(func(t *testing.T, data []byte) {
		sid, payload, err := ParseDatagram(data)
		q, n, ok := refVarint(data)
		switch {
		case !ok:
			require.Equal(t, ErrTruncated, err)
			return
		case q > MaxQuarterStreamID:
			require.Equal(t, ErrQuarterStreamIDTooLarge, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, q*4, sid)
		require.Len(t, payload, len(data)-n)
		if len(payload) > 0 {
			require.Same(t, &data[n], &payload[0], "payload aliases the datagram")
		}

		ctx, rest, err := ParseContextID(payload)
		c, m, ok := refVarint(payload)
		if !ok {
			require.Equal(t, ErrTruncated, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, c, ctx)
		require.Equal(t, payload[m:], rest)

		// Re-encode: AppendDatagram and PutDatagramHeader agree, parse back
		// to the same values, and reproduce the input when it was minimal.
		out := AppendDatagram(nil, sid, ctx, rest)
		hl := DatagramHeaderLen(sid, ctx)
		require.Len(t, out, hl+len(rest))
		buf := make([]byte, MaxDatagramHeaderLen+len(rest))
		copy(buf[MaxDatagramHeaderLen:], rest)
		start := PutDatagramHeader(buf, MaxDatagramHeaderLen, sid, ctx)
		require.Equal(t, MaxDatagramHeaderLen-hl, start)
		require.Equal(t, out, buf[start:])
		if n == lenOf(q) && m == lenOf(c) {
			require.Equal(t, data, out)
		} else {
			require.Less(t, len(out), len(data))
		}
		sid2, p2, err := ParseDatagram(out)
		require.NoError(t, err)
		ctx2, rest2, err := ParseContextID(p2)
		require.NoError(t, err)
		require.Equal(t, []uint64{sid, ctx}, []uint64{sid2, ctx2})
		require.Equal(t, rest, rest2)
	})
}

func FuzzDatagramRoundTrip(f *testing.F) {
	f.Add(uint64(0), uint64(0), []byte{})
	f.Add(uint64(MaxQuarterStreamID), uint64(1<<62-1), []byte("payload"))
	f.Add(uint64(1<<60), uint64(64), []byte{1})
	f.Add(uint64(1<<64-1), uint64(16383), []byte(nil))
	f.Add(uint64(0x0123456789abcdef), uint64(0x3edcba9876543210), []byte{1, 2})
	f.Fuzz(func(t *testing.T, rawQSID, rawCtx uint64, payload []byte) {
		ctx := rawCtx & (1<<62 - 1)
		// Any Quarter Stream ID a varint can carry above 2^60-1 is refused.
		if q := rawQSID & (1<<62 - 1); q > MaxQuarterStreamID {
			_, _, err := ParseDatagram(cat(varint(q), varint(ctx), payload))
			require.Equal(t, ErrQuarterStreamIDTooLarge, err)
		}
		sid := (rawQSID & MaxQuarterStreamID) * 4

		out := AppendDatagram([]byte("prefix"), sid, ctx, payload)
		require.Equal(t, "prefix", string(out[:6]))
		out = out[6:]
		buf := make([]byte, 3+MaxDatagramHeaderLen+len(payload))
		copy(buf[3+MaxDatagramHeaderLen:], payload)
		start := PutDatagramHeader(buf, 3+MaxDatagramHeaderLen, sid, ctx)
		require.GreaterOrEqual(t, start, 3)
		require.Equal(t, out, buf[start:])

		gotSID, p, err := ParseDatagram(out)
		require.NoError(t, err)
		require.Equal(t, sid, gotSID)
		gotCtx, rest, err := ParseContextID(p)
		require.NoError(t, err)
		require.Equal(t, ctx, gotCtx)
		require.Equal(t, len(payload), len(rest))
		require.True(t, bytes.Equal(payload, rest))
	})
}

// refCapsules reads capsules from data as CapsuleReader should, and returns
// the wanted ones and the error that ends the stream.
func refCapsules(data []byte, maxValue int, wanted func(uint64) bool) ([]capsule, error) {
	var out []capsule
	for len(data) > 0 {
		typ, n, ok := refVarint(data)
		if !ok {
			return out, ErrMalformedCapsule
		}
		data = data[n:]
		l, n, ok := refVarint(data)
		if !ok {
			return out, ErrMalformedCapsule
		}
		data = data[n:]
		want := wanted == nil || wanted(typ)
		if want && l > uint64(maxValue) {
			return out, ErrCapsuleTooLarge
		}
		if l > uint64(len(data)) {
			return out, ErrMalformedCapsule
		}
		if want {
			out = append(out, capsule{typ, data[:l]})
		}
		data = data[l:]
	}
	return out, io.EOF
}

// checkCapsules reads r to its end with a CapsuleReader and compares what
// it returns with want and wantErr.
func checkCapsules(t *testing.T, r io.Reader, maxValue int, wanted func(uint64) bool, want []capsule, wantErr error) {
	t.Helper()
	c := NewCapsuleReader(r, maxValue, wanted)
	limit := maxValue
	if limit <= 0 {
		limit = DefaultMaxCapsuleValue
	}
	got := 0
	var err error
	for {
		var typ uint64
		var v []byte
		typ, v, err = c.Next()
		if err != nil {
			if v != nil {
				t.Fatalf("value %x returned with error %v", v, err)
			}
			break
		}
		// Plain checks in the loop: require's reflection would make each
		// execution, and the fuzzer's minimization, many times slower.
		if len(v) > limit {
			t.Fatalf("value of %d bytes above the limit %d", len(v), limit)
		}
		if wanted != nil && !wanted(typ) {
			t.Fatalf("type %#x not wanted", typ)
		}
		i := got
		if i >= len(want) || want[i].typ != typ || !bytes.Equal(want[i].value, v) {
			t.Fatalf("capsule %d: got type %#x, %d bytes; want %d capsules %v", i, typ, len(v), len(want), want)
		}
		got++
	}
	if cap(c.buf) > limit {
		t.Fatalf("value buffer of %d bytes above the limit %d", cap(c.buf), limit)
	}
	require.Equal(t, len(want), got, "capsules")
	require.ErrorIs(t, err, wantErr)
	if wantErr == ErrMalformedCapsule {
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	}
	_, _, err2 := c.Next()
	require.Equal(t, err, err2, "sticky")
}

func wantedByMask(mask uint8) func(uint64) bool {
	if mask == 0xff {
		return nil
	}
	return func(typ uint64) bool { return typ < 8 && mask>>typ&1 == 1 }
}

func FuzzCapsuleReader(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint8(0xff), false)
	f.Add(AppendCapsule(AppendCapsule(nil, 0, []byte{0, 1}), 0x1234, []byte("skip")), uint16(10), uint8(1), true)
	f.Add(cat(varint(0), varint(1<<62-1)), uint16(0), uint8(0xff), false)
	f.Add(cat(varint(0x99), varint(1<<62-1), []byte{1, 2}), uint16(0), uint8(1), true)
	f.Add([]byte{0x00, 0x05, 1, 2}, uint16(100), uint8(0xff), true)
	f.Add([]byte{0x00, 0x40}, uint16(100), uint8(0xff), false)
	f.Fuzz(func(t *testing.T, data []byte, maxValue uint16, wantedMask uint8, oneByte bool) {
		wanted := wantedByMask(wantedMask)
		limit := int(maxValue)
		if limit == 0 {
			limit = DefaultMaxCapsuleValue
		}
		want, wantErr := refCapsules(data, limit, wanted)
		var r io.Reader = bytes.NewReader(data)
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		checkCapsules(t, r, int(maxValue), wanted, want, wantErr)
	})
}

// FuzzCapsuleRoundTrip builds a capsule stream with AppendCapsule from spec
// (two bytes per capsule: type class and length), cuts it at cut, and
// checks that the reader returns exactly the wanted capsules that fit and
// ends with the error the cut and the size limit call for.
func FuzzCapsuleRoundTrip(f *testing.F) {
	f.Add([]byte{0, 4, 1, 0x85, 0xc0, 2}, uint16(1000), uint16(0xffff))
	f.Add([]byte{0, 0xff, 0, 1}, uint16(10), uint16(3))
	f.Add([]byte{0x80, 0x10, 0x41, 0x7f}, uint16(0), uint16(40))
	f.Fuzz(func(t *testing.T, spec []byte, maxValue uint16, cut uint16) {
		type span struct {
			capsule
			start, hdrEnd, end int
		}
		var stream []byte
		var spans []span
		for i := 0; i+1 < len(spec) && len(spans) < 64; i += 2 {
			t, l := spec[i], spec[i+1]
			var typ uint64
			switch t >> 6 {
			case 0:
				typ = uint64(t & 0x3f)
			case 1:
				typ = uint64(t&0x3f)<<8 | 0xff
			case 2:
				typ = uint64(t) << 24
			case 3:
				typ = 1<<62 - 1 - uint64(t&0x3f)
			}
			n := int(l & 0x7f)
			if l&0x80 != 0 {
				n *= 97 // up to 12 KiB
			}
			value := bytes.Repeat([]byte{byte(i)}, n)
			s := span{capsule: capsule{typ, value}, start: len(stream)}
			stream = AppendCapsule(stream, typ, value)
			s.end = len(stream)
			s.hdrEnd = s.end - n
			spans = append(spans, s)
		}
		cutAt := int(cut) % (len(stream) + 1)
		limit := int(maxValue)
		if limit == 0 {
			limit = DefaultMaxCapsuleValue
		}
		wanted := func(typ uint64) bool { return typ%3 != 0 }

		var want []capsule
		wantErr := io.EOF
		for _, s := range spans {
			if cutAt <= s.start {
				break // cut on a boundary: clean end
			}
			if cutAt < s.hdrEnd {
				wantErr = ErrMalformedCapsule
				break
			}
			if wanted(s.typ) && len(s.value) > limit {
				wantErr = ErrCapsuleTooLarge
				break
			}
			if cutAt < s.end {
				wantErr = ErrMalformedCapsule
				break
			}
			if wanted(s.typ) {
				want = append(want, s.capsule)
			}
		}
		checkCapsules(t, iotest.HalfReader(bytes.NewReader(stream[:cutAt])), int(maxValue), wanted, want, wantErr)
	})
}

func isHTTP2Setting(id uint64) bool { return id == 0 || (id >= 2 && id <= 5) }

func FuzzParseSettings(f *testing.F) {
	f.Add([]byte{})
	f.Add(settingsPayload(0x33, 1, 0x08, 1, 0x06, 1<<62-1, 0x01, 0, 0x07, 100, 0x21, 7))
	f.Add(settingsPayload(0x33, 1, 0x33, 1))
	f.Add(settingsPayload(0x02, 0))
	f.Add(settingsPayload(0x33, 2))
	f.Add(cat(settingsPayload(0x06, 5), []byte{0xc0, 1}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, err := ParseSettings(payload)

		// Reference: walk the pairs; the first bad pair or truncation,
		// in order, decides; duplicates are checked once all are read.
		var pairs []Setting
		var wantCode ErrorCode
		for b := payload; len(b) > 0 && wantCode == 0; {
			id, n, ok := refVarint(b)
			if !ok {
				wantCode = ErrCodeFrameError
				break
			}
			v, m, ok := refVarint(b[n:])
			if !ok {
				wantCode = ErrCodeFrameError
				break
			}
			b = b[n+m:]
			if isHTTP2Setting(id) || ((id == SettingH3Datagram || id == SettingEnableConnectProtocol) && v > 1) {
				wantCode = ErrCodeSettingsError
			}
			pairs = append(pairs, Setting{id, v})
		}
		if wantCode == 0 {
			seen := map[uint64]bool{}
			for _, p := range pairs {
				if seen[p.ID] {
					wantCode = ErrCodeSettingsError
				}
				seen[p.ID] = true
			}
		}
		if wantCode != 0 {
			requireCode(t, err, wantCode)
			require.Equal(t, Settings{}, s)
			return
		}
		require.NoError(t, err)

		var want Settings
		for _, p := range pairs {
			switch p.ID {
			case SettingH3Datagram:
				want.Datagram = p.Value == 1
			case SettingEnableConnectProtocol:
				want.ExtendedConnect = p.Value == 1
			case SettingMaxFieldSectionSize:
				want.MaxFieldSectionSize, want.HasMaxFieldSectionSize = p.Value, true
			default:
				if len(want.Other) < MaxOtherSettings {
					want.Other = append(want.Other, p)
				} else {
					want.OtherDropped++
				}
			}
		}
		require.Equal(t, want.Other, s.Other)
		want.Other = s.Other // nil and empty compare equal above
		require.Equal(t, want, s)

		// Round trip through AppendSettingsFrame.
		fr := AppendSettingsFrame(nil, s)
		typ, n, ok := refVarint(fr)
		require.True(t, ok)
		require.EqualValues(t, FrameSettings, typ)
		l, m, ok := refVarint(fr[n:])
		require.True(t, ok)
		payload2 := fr[n+m:]
		require.EqualValues(t, len(payload2), l)
		if s.OtherDropped == 0 {
			require.LessOrEqual(t, len(payload2), len(payload), "minimal and without defaults")
		}
		s2, err := ParseSettings(payload2)
		require.NoError(t, err)
		s.OtherDropped = 0
		if len(s.Other) == 0 {
			s.Other = s2.Other
		}
		require.Equal(t, s, s2)
	})
}

// refControl reads a control stream as ControlStreamReader should and
// returns the frames and the code that ends it.
func refControl(data []byte, peer Role) ([]Frame, ErrorCode, int) {
	var out []Frame
	var gotSettings, hasGo, hasMax bool
	var lastGo, lastMax uint64
	skipped := 0
	for {
		typ, n, ok := refVarint(data)
		if !ok {
			return out, ErrCodeClosedCriticalStream, skipped
		}
		data = data[n:]
		l, n, ok := refVarint(data)
		if !ok {
			return out, ErrCodeClosedCriticalStream, skipped
		}
		data = data[n:]
		if !gotSettings && typ != FrameSettings {
			return out, ErrCodeMissingSettings, skipped
		}
		switch typ {
		case FrameSettings:
			if gotSettings {
				return out, ErrCodeFrameUnexpected, skipped
			}
			if l > MaxSettingsFrameLen {
				return out, ErrCodeExcessiveLoad, skipped
			}
			if l > uint64(len(data)) {
				return out, ErrCodeClosedCriticalStream, skipped
			}
			s, err := ParseSettings(data[:l])
			if err != nil {
				return out, err.(*H3Error).Code, skipped
			}
			gotSettings = true
			out = append(out, Frame{Type: typ, Settings: &s})
		case FrameData, FrameHeaders, FramePushPromise, 0x02, 0x06, 0x08, 0x09:
			return out, ErrCodeFrameUnexpected, skipped
		case FrameGoAway, FrameCancelPush, FrameMaxPushID:
			if typ == FrameMaxPushID && peer == RoleServer {
				return out, ErrCodeFrameUnexpected, skipped
			}
			if l == 0 || l > 8 {
				return out, ErrCodeFrameError, skipped
			}
			if l > uint64(len(data)) {
				return out, ErrCodeClosedCriticalStream, skipped
			}
			id, n, ok := refVarint(data[:l])
			if !ok || uint64(n) != l {
				return out, ErrCodeFrameError, skipped
			}
			switch typ {
			case FrameGoAway:
				if (peer == RoleServer && id%4 != 0) || (hasGo && id > lastGo) {
					return out, ErrCodeIDError, skipped
				}
				hasGo, lastGo = true, id
				out = append(out, Frame{Type: typ, GoAwayID: id})
			case FrameCancelPush:
				out = append(out, Frame{Type: typ, PushID: id})
			case FrameMaxPushID:
				if hasMax && id < lastMax {
					return out, ErrCodeIDError, skipped
				}
				hasMax, lastMax = true, id
				out = append(out, Frame{Type: typ, PushID: id})
			}
		default:
			if l > uint64(len(data)) {
				return out, ErrCodeClosedCriticalStream, skipped
			}
			skipped++
		}
		data = data[l:]
	}
}

func FuzzControlStreamReader(f *testing.F) {
	f.Add([]byte{}, false, false, false)
	f.Add(cat(settingsFrame, goAway(8), goAway(4)), true, false, true)
	f.Add(cat(frame(FrameCancelPush, varint(1)), maxPushID(3), maxPushID(2)), false, true, false)
	f.Add(cat(frame(FramePriorityUpdateRequest, []byte{0, 'u'}), frame(0x21, nil), goAway(1)), false, true, true)
	f.Add(cat(varint(FrameSettings), varint(MaxSettingsFrameLen+1)), false, false, false)
	f.Add(frame(FrameGoAway, []byte{4, 0}), true, true, false)
	f.Fuzz(func(t *testing.T, data []byte, peerServer, prefixSettings, oneByte bool) {
		peer := RoleClient
		if peerServer {
			peer = RoleServer
		}
		if prefixSettings {
			data = cat(settingsFrame, data)
		}
		want, wantCode, wantSkipped := refControl(data, peer)

		var r io.Reader = bytes.NewReader(data)
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		c := NewControlStreamReader(r, peer)
		got, err := readFrames(c)
		require.Equal(t, want, got)
		h := requireCode(t, err, wantCode)
		if wantCode == ErrCodeClosedCriticalStream {
			require.True(t, errors.Is(h, io.EOF) || errors.Is(h, io.ErrUnexpectedEOF), "cause: %v", h.Err)
		}
		require.EqualValues(t, wantSkipped, c.Skipped())
		require.LessOrEqual(t, (len(got)+wantSkipped)*2, len(data), "every frame takes two bytes at least")
		_, err2 := c.Next()
		require.Same(t, h, err2, "sticky")
	})
}
