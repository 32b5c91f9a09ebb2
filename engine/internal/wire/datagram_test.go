package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDatagram(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		sid     uint64
		payload []byte
		err     error
	}{
		{name: "empty", in: nil, err: ErrTruncated},
		{name: "2-byte varint cut", in: []byte{0x40}, err: ErrTruncated},
		{name: "4-byte varint cut", in: []byte{0x80, 0, 0}, err: ErrTruncated},
		{name: "8-byte varint cut", in: []byte{0xc0, 0, 0, 0, 0, 0, 0}, err: ErrTruncated},
		{name: "qsid 0, no payload", in: []byte{0}, sid: 0, payload: []byte{}},
		{name: "qsid 1", in: []byte{1, 0, 'x'}, sid: 4, payload: []byte{0, 'x'}},
		{name: "non-minimal qsid", in: cat(varintN(1, 8), []byte{0}), sid: 4, payload: []byte{0}},
		{name: "qsid 2^60-1", in: cat(varint(MaxQuarterStreamID), []byte{0}), sid: MaxQuarterStreamID * 4, payload: []byte{0}},
		{name: "qsid 2^60", in: cat(varint(1<<60), []byte{0}), err: ErrQuarterStreamIDTooLarge},
		{name: "qsid 2^62-1", in: varint(1<<62 - 1), err: ErrQuarterStreamIDTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sid, payload, err := ParseDatagram(tc.in)
			if tc.err != nil {
				require.Equal(t, tc.err, err, "sentinel, unwrapped")
				require.Nil(t, payload)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.sid, sid)
			require.Equal(t, tc.payload, payload)
		})
	}
}

func TestParseContextID(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		id   uint64
		rest []byte
		err  error
	}{
		{name: "empty", in: []byte{}, err: ErrTruncated},
		{name: "cut", in: []byte{0x80, 1}, err: ErrTruncated},
		{name: "zero", in: []byte{0, 1, 2}, id: 0, rest: []byte{1, 2}},
		{name: "max", in: cat(varint(1<<62-1), []byte{9}), id: 1<<62 - 1, rest: []byte{9}},
		{name: "no payload", in: varint(7), id: 7, rest: []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, rest, err := ParseContextID(tc.in)
			require.Equal(t, tc.err, err)
			if err == nil {
				require.Equal(t, tc.id, id)
				require.Equal(t, tc.rest, rest)
			}
		})
	}
}

var datagramIDs = []struct{ sid, ctx uint64 }{
	{0, 0},
	{4, 0},
	{63 * 4, 63},
	{64 * 4, 64},
	{16383 * 4, 16384},
	{(1<<30 - 1) * 4, 1 << 30},
	{MaxQuarterStreamID * 4, 1<<62 - 1},
}

func TestPutDatagramHeader(t *testing.T) {
	payload := []byte("udp payload")
	for _, id := range datagramIDs {
		hl := DatagramHeaderLen(id.sid, id.ctx)
		require.LessOrEqual(t, hl, MaxDatagramHeaderLen)

		buf := make([]byte, MaxDatagramHeaderLen+len(payload))
		copy(buf[MaxDatagramHeaderLen:], payload)
		start := PutDatagramHeader(buf, MaxDatagramHeaderLen, id.sid, id.ctx)
		require.Equal(t, MaxDatagramHeaderLen-hl, start)
		require.Equal(t, AppendDatagram(nil, id.sid, id.ctx, payload), buf[start:])

		sid, p, err := ParseDatagram(buf[start:])
		require.NoError(t, err)
		require.Equal(t, id.sid, sid)
		ctx, rest, err := ParseContextID(p)
		require.NoError(t, err)
		require.Equal(t, id.ctx, ctx)
		require.Equal(t, payload, rest)

		// Exact fit: the header fills buf[:payloadOff].
		exact := make([]byte, hl)
		require.Zero(t, PutDatagramHeader(exact, hl, id.sid, id.ctx))
	}
}

func TestPutDatagramHeaderPanics(t *testing.T) {
	buf := make([]byte, 32)
	require.Panics(t, func() { PutDatagramHeader(buf, 1, 4, 0) }, "does not fit")
	require.Panics(t, func() { PutDatagramHeader(buf, 15, MaxQuarterStreamID*4, 1<<62-1) }, "does not fit")
	require.Panics(t, func() { PutDatagramHeader(buf, 33, 0, 0) }, "payloadOff past buf")
	require.Panics(t, func() { PutDatagramHeader(buf, 16, 1, 0) }, "server-initiated")
	require.Panics(t, func() { PutDatagramHeader(buf, 16, 2, 0) }, "unidirectional")
	require.Panics(t, func() { PutDatagramHeader(buf, 16, 1<<62, 0) }, "stream ID too large")
	require.Panics(t, func() { PutDatagramHeader(buf, 16, 0, 1<<62) }, "context ID too large")
	require.Panics(t, func() { DatagramHeaderLen(3, 0) })
	require.Panics(t, func() { AppendDatagram(nil, 1<<62, 0, nil) })
	require.NotPanics(t, func() { PutDatagramHeader(buf, 16, MaxQuarterStreamID*4, 1<<62-1) })
}

func TestDatagramAllocs(t *testing.T) {
	buf := make([]byte, MaxDatagramHeaderLen+1200)
	start := PutDatagramHeader(buf, MaxDatagramHeaderLen, 1<<20, 0)
	d := buf[start:]
	var sink uint64
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		sid, p, _ := ParseDatagram(d)
		ctx, _, _ := ParseContextID(p)
		sink += sid + ctx
	}), "ParseDatagram + ParseContextID")
	bad := varint(1 << 60)
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		_, _, err := ParseDatagram(bad)
		if err != nil {
			sink++
		}
		_, _, err = ParseDatagram(nil)
		if err != nil {
			sink++
		}
	}), "error path")
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		sink += uint64(PutDatagramHeader(buf, MaxDatagramHeaderLen, MaxQuarterStreamID*4, 2))
	}), "PutDatagramHeader")
	out := make([]byte, 0, 2048)
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		out = AppendDatagram(out[:0], 1<<20, 0, buf[MaxDatagramHeaderLen:])
	}), "AppendDatagram with capacity")
}

func BenchmarkParseDatagram(b *testing.B) {
	buf := make([]byte, MaxDatagramHeaderLen+1200)
	d := buf[PutDatagramHeader(buf, MaxDatagramHeaderLen, 1<<20, 0):]
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		sid, p, err := ParseDatagram(d)
		if err != nil || sid != 1<<20 {
			b.Fatal(sid, err)
		}
		if _, _, err := ParseContextID(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutDatagramHeader(b *testing.B) {
	buf := make([]byte, MaxDatagramHeaderLen+1200)
	b.ReportAllocs()
	sid := uint64(0)
	for b.Loop() {
		PutDatagramHeader(buf, MaxDatagramHeaderLen, sid, 0)
		sid = (sid + 4) & (1<<20 - 1)
	}
}
