package ippkt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseIPv4(t *testing.T) {
	udp := udpSeg(1234, 53, []byte("query"))
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Header
	}{
		{"udp", v4pkt(v4opts{ttl: 64, proto: ProtoUDP, payload: udp}),
			Header{4, src4, dst4, ProtoUDP, 64, 20, 20 + len(udp), NotFragment}},
		{"options", v4pkt(v4opts{ttl: 1, proto: ProtoTCP, options: []byte{1, 1, 1, 0, 7, 3, 4, 0}, payload: repeat(20)}),
			Header{4, src4, dst4, ProtoTCP, 1, 28, 48, NotFragment}},
		{"max ihl, no payload", v4pkt(v4opts{ttl: 255, proto: 253, options: make([]byte, 40)}),
			Header{4, src4, dst4, 253, 255, 60, 60, NotFragment}},
		{"df", v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagDF, payload: udp}),
			Header{4, src4, dst4, ProtoUDP, 64, 20, 20 + len(udp), NotFragment}},
		{"first fragment", v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagMF, payload: repeat(16)}),
			Header{4, src4, dst4, ProtoUDP, 64, 20, 36, FirstFragment}},
		{"middle fragment", v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagMF | 2, payload: repeat(16)}),
			Header{4, src4, dst4, ProtoUDP, 64, 20, 36, LaterFragment}},
		{"last fragment", v4pkt(v4opts{proto: ProtoUDP, flagsFrag: 0x1fff, payload: repeat(3)}),
			Header{4, src4, dst4, ProtoUDP, 64, 20, 23, LaterFragment}},
		{"ttl 0", v4pkt(v4opts{ttl: 0, proto: ProtoICMP}), // v4pkt maps 0 to 64
			Header{4, src4, dst4, ProtoICMP, 64, 20, 20, NotFragment}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.pkt)
			require.NoError(t, err)
			require.Equal(t, tc.want, h)
		})
	}
}

func TestParseIPv6(t *testing.T) {
	udp := udpSeg(1234, 53, []byte("query"))
	hdr := func(proto uint8, hlen, total int, f Fragment) Header {
		return Header{6, src6, dst6, proto, 64, hlen, total, f}
	}
	for _, tc := range []struct {
		name string
		o    v6opts
		want Header
	}{
		{"udp", v6opts{proto: ProtoUDP, payload: udp}, hdr(ProtoUDP, 40, 40+len(udp), NotFragment)},
		{"no next header, empty", v6opts{proto: ProtoNoNext}, hdr(ProtoNoNext, 40, 40, NotFragment)},
		{"no next header after options, bytes after", v6opts{exts: []ext{optsHdr(ProtoDestOpts, 0)}, proto: ProtoNoNext, payload: repeat(5)},
			hdr(ProtoNoNext, 48, 53, NotFragment)},
		{"hbh, dest, routing, dest, tcp", v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), optsHdr(ProtoDestOpts, 1), optsHdr(ProtoRouting, 2), optsHdr(ProtoDestOpts, 0)}, proto: ProtoTCP, payload: repeat(20)},
			hdr(ProtoTCP, 40+8+16+24+8, 40+56+20, NotFragment)},
		{"ah then tcp", v6opts{exts: []ext{ahHdr(4)}, proto: ProtoTCP, payload: repeat(20)}, hdr(ProtoTCP, 64, 84, NotFragment)},
		{"ah, min length", v6opts{exts: []ext{ahHdr(0)}, proto: ProtoUDP, payload: udp}, hdr(ProtoUDP, 48, 48+len(udp), NotFragment)},
		{"esp stops the walk", v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0)}, proto: ProtoESP, payload: repeat(30)}, hdr(ProtoESP, 48, 78, NotFragment)},
		{"icmpv6", v6opts{proto: ProtoICMPv6, payload: icmpMsg(128, 0, 0, 1, 0, 1)}, hdr(ProtoICMPv6, 40, 48, NotFragment)},
		{"first fragment", v6opts{exts: []ext{fragHdr(0, true)}, proto: ProtoUDP, payload: udp}, hdr(ProtoUDP, 48, 48+len(udp), FirstFragment)},
		{"first fragment, headers after", v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), fragHdr(0, true), optsHdr(ProtoDestOpts, 0)}, proto: ProtoUDP, payload: udp},
			hdr(ProtoUDP, 64, 64+len(udp), FirstFragment)},
		{"atomic fragment", v6opts{exts: []ext{fragHdr(0, false)}, proto: ProtoUDP, payload: udp}, hdr(ProtoUDP, 48, 48+len(udp), NotFragment)},
		{"later fragment", v6opts{exts: []ext{fragHdr(100, true)}, proto: ProtoUDP, payload: repeat(16)}, hdr(ProtoUDP, 48, 64, LaterFragment)},
		{"last fragment, dest opts inside", v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), fragHdr(1, false)}, proto: ProtoDestOpts, payload: repeat(3)},
			hdr(ProtoDestOpts, 56, 59, LaterFragment)},
		{"later fragment, garbage after", v6opts{exts: []ext{fragHdr(1, false)}, proto: ProtoHopByHop, payload: []byte{0xff}},
			hdr(ProtoHopByHop, 48, 49, LaterFragment)},
		{"eight headers", v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), optsHdr(60, 0), optsHdr(43, 0), optsHdr(60, 0), optsHdr(43, 0), optsHdr(60, 0), ahHdr(0), fragHdr(0, true)}, proto: ProtoUDP, payload: udp},
			hdr(ProtoUDP, 40+64, 104+len(udp), FirstFragment)},
		{"mobility is not walked", v6opts{proto: 135, payload: repeat(8)}, hdr(135, 40, 48, NotFragment)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(v6pkt(tc.o))
			require.NoError(t, err)
			require.Equal(t, tc.want, h)
		})
	}
}

func TestParseErrors(t *testing.T) {
	good4 := v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	good6 := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	mod := func(b []byte, f func([]byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	// v4fix edits an IPv4 header and fixes its checksum after.
	v4fix := func(f func([]byte)) []byte {
		return mod(good4, func(b []byte) { f(b); fixV4Checksum(b) })
	}
	ext6 := func(exts []ext, proto uint8, payload []byte) []byte {
		return v6pkt(v6opts{exts: exts, proto: proto, payload: payload})
	}
	nine := make([]ext, 9)
	for i := range nine {
		nine[i] = optsHdr(ProtoDestOpts, 0)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, errShort},
		{"version 0", []byte{0x05}, errVersion},
		{"version 5", mod(good4, func(b []byte) { b[0] = 5<<4 | 5 }), errVersion},
		{"version 15", mod(good6, func(b []byte) { b[0] = 0xf0 }), errVersion},
		{"v4 one byte", []byte{0x45}, errShort},
		{"v4 19 bytes", good4[:19], errShort},
		{"v4 ihl 4", v4fix(func(b []byte) { b[0] = 0x44 }), errIHL},
		{"v4 ihl 0", v4fix(func(b []byte) { b[0] = 0x40 }), errIHL},
		{"v4 ihl beyond packet", mod(good4, func(b []byte) { b[0] = 0x4f }), errIHL},
		{"v4 total below ihl", v4fix(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), errTotalShort},
		{"v4 total beyond packet", v4fix(func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1)) }), errTruncated},
		{"v4 truncated", good4[:len(good4)-1], errTruncated},
		{"v4 trailing byte", append(bytes.Clone(good4), 0), errTrailing},
		{"v4 ethernet padding", v4fix(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 20) }), errTrailing},
		{"v4 bad checksum", mod(good4, func(b []byte) { b[10] ^= 1 }), errChecksum},
		{"v4 changed ttl", mod(good4, func(b []byte) { b[8]-- }), errChecksum},
		{"v6 39 bytes", good6[:39], errShort},
		{"v6 truncated", good6[:len(good6)-1], errTruncated},
		{"v6 payload length beyond", mod(good6, func(b []byte) { b[5]++ }), errTruncated},
		{"v6 trailing byte", append(bytes.Clone(good6), 0), errTrailing},
		{"v6 jumbogram", mod(ext6([]ext{optsHdr(ProtoHopByHop, 0)}, ProtoUDP, udpSeg(1, 2, nil)), func(b []byte) { b[4], b[5] = 0, 0 }), errTrailing},
		{"v6 hbh cut", ext6(nil, ProtoHopByHop, repeat(7)), errExtTruncated},
		{"v6 options length beyond", mod(ext6([]ext{optsHdr(ProtoDestOpts, 0)}, ProtoUDP, repeat(8)), func(b []byte) { b[41] = 2 }), errExtTruncated},
		{"v6 routing cut", ext6([]ext{optsHdr(ProtoHopByHop, 0)}, ProtoRouting, repeat(4)), errExtTruncated},
		{"v6 fragment cut", ext6(nil, ProtoFragment, repeat(7)), errExtTruncated},
		{"v6 ah cut", mod(ext6([]ext{ahHdr(0)}, ProtoTCP, nil), func(b []byte) { b[41] = 1 }), errExtTruncated},
		{"v6 empty chain", ext6(nil, ProtoDestOpts, nil), errExtTruncated},
		{"v6 hbh second", ext6([]ext{optsHdr(ProtoDestOpts, 0), optsHdr(ProtoHopByHop, 0)}, ProtoUDP, udpSeg(1, 2, nil)), errHopByHop},
		{"v6 hbh twice", ext6([]ext{optsHdr(ProtoHopByHop, 0), optsHdr(ProtoHopByHop, 0)}, ProtoUDP, udpSeg(1, 2, nil)), errHopByHop},
		{"v6 two fragment headers", ext6([]ext{fragHdr(0, true), fragHdr(0, true)}, ProtoUDP, udpSeg(1, 2, nil)), errFragTwice},
		{"v6 nine headers", ext6(nine, ProtoUDP, udpSeg(1, 2, nil)), errExtTooMany},
		{"v6 header loop", func() []byte {
			// 200 Destination Options headers pointing at each other: the
			// bound stops the walk, whatever the payload holds.
			exts := make([]ext, 200)
			for i := range exts {
				exts[i] = optsHdr(ProtoDestOpts, 0)
			}
			return ext6(exts, ProtoDestOpts, repeat(8))
		}(), errExtTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.pkt)
			require.Equal(t, tc.want, err)
			require.ErrorIs(t, err, ErrMalformed)
			require.Equal(t, Header{}, h)
		})
	}
}

func TestFragmentString(t *testing.T) {
	require.Equal(t, "not-fragment", NotFragment.String())
	require.Equal(t, "first-fragment", FirstFragment.String())
	require.Equal(t, "later-fragment", LaterFragment.String())
	require.Equal(t, "Fragment(9)", Fragment(9).String())
}

func TestParseAllocs(t *testing.T) {
	pkts := [][]byte{
		v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(100))}),
		v6pkt(v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), fragHdr(0, true), ahHdr(2)}, proto: ProtoTCP, payload: repeat(40)}),
		v6pkt(v6opts{exts: []ext{fragHdr(3, true)}, proto: ProtoUDP, payload: repeat(40)}),
		{0x45, 0},        // error path
		make([]byte, 60), // version 0
	}
	for _, p := range pkts {
		require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = Parse(p) }))
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-udp", v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1200))})},
		{"ipv6-udp", v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1200))})},
		{"ipv6-3ext", v6pkt(v6opts{exts: []ext{optsHdr(ProtoHopByHop, 0), optsHdr(ProtoDestOpts, 0), fragHdr(0, true)}, proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1200))})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var err error
			for b.Loop() {
				_, err = Parse(bc.pkt)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// refWalk is the reference for the IPv6 walk: it follows the chain with no
// cleverness, and reports whether it ends cleanly within MaxExtHeaders.
func refWalk(pkt []byte) (proto uint8, off int, frag Fragment, ok bool) {
	next, off := pkt[6], 40
	seen := 0
	sawFrag := false
	for {
		isExt := next == 0 || next == 43 || next == 44 || next == 51 || next == 60
		if !isExt {
			return next, off, frag, true
		}
		seen++
		if seen > MaxExtHeaders || off+8 > len(pkt) || next == 0 && off != 40 || next == 44 && sawFrag {
			return 0, 0, 0, false
		}
		var size int
		switch next {
		case 44:
			sawFrag = true
			size = 8
			offset := int(pkt[off+2])<<5 | int(pkt[off+3])>>3
			if offset != 0 {
				return pkt[off], off + 8, LaterFragment, true
			}
			if pkt[off+3]&1 == 1 {
				frag = FirstFragment
			}
		case 51:
			size = 4 * (int(pkt[off+1]) + 2)
		default:
			size = 8 * (int(pkt[off+1]) + 1)
		}
		if off+size > len(pkt) {
			return 0, 0, 0, false
		}
		next = pkt[off]
		off += size
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		checkParse(t, pkt)
		if fixed, ok := fixLengths(pkt); ok {
			checkParse(t, fixed)
		}
	})
}

// fixLengths returns a copy of pkt with its IPv4 Total Length or IPv6
// Payload Length set to its length and its IPv4 header checksum set, so
// that the fuzzer gets past them and into the rest; ok is false if pkt is
// too short or its version or IHL hopeless.
func fixLengths(pkt []byte) ([]byte, bool) {
	if len(pkt) == 0 || len(pkt) > 0xffff {
		return nil, false
	}
	p := bytes.Clone(pkt)
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 || int(p[0]&0xf)*4 < 20 || int(p[0]&0xf)*4 > len(p) {
			return nil, false
		}
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		fixV4Checksum(p)
	case 6:
		if len(p) < 40 || len(p) > 40+0xffff {
			return nil, false
		}
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
	default:
		return nil, false
	}
	return p, true
}

// checkParse checks the invariants of Parse and DecrementHopLimit on pkt.
func checkParse(t *testing.T, pkt []byte) {
	h, err := Parse(pkt)
	cp := bytes.Clone(pkt)
	dec := DecrementHopLimit(cp) // never panics, whatever pkt is
	if err != nil {
		require.True(t, errors.Is(err, ErrMalformed))
		require.Equal(t, Header{}, h)
		if len(pkt) >= 40 && pkt[0]>>4 == 6 && 40+int(binary.BigEndian.Uint16(pkt[4:6])) == len(pkt) {
			_, _, _, ok := refWalk(pkt)
			require.False(t, ok, "the reference walk accepts: %v", err)
		}
		return
	}
	require.True(t, h.Version == 4 || h.Version == 6)
	require.True(t, h.Src.IsValid() && h.Dst.IsValid())
	require.Equal(t, h.Version == 4, h.Src.Is4())
	require.Equal(t, h.Version == 4, h.Dst.Is4())
	require.Empty(t, h.Src.Zone()+h.Dst.Zone())
	require.Equal(t, len(pkt), h.TotalLen)
	require.LessOrEqual(t, h.HeaderLen, h.TotalLen)
	if h.Version == 4 {
		require.Equal(t, int(pkt[0]&0xf)*4, h.HeaderLen)
		require.GreaterOrEqual(t, h.HeaderLen, 20)
		require.Equal(t, pkt[9], h.Proto)
		require.Equal(t, uint16(0xffff), refSum(pkt[:h.HeaderLen]), "header checksum")
		fo := binary.BigEndian.Uint16(pkt[6:8])
		require.Equal(t, fo&0x1fff != 0, h.Fragment == LaterFragment)
		require.Equal(t, fo&0x1fff == 0 && fo&flagMF != 0, h.Fragment == FirstFragment)
	} else {
		proto, off, frag, ok := refWalk(pkt)
		require.True(t, ok, "reference walk")
		require.Equal(t, proto, h.Proto)
		require.Equal(t, off, h.HeaderLen)
		require.Equal(t, frag, h.Fragment)
	}

	// DecrementHopLimit: false and untouched at 0 and 1, else one less
	// and a header checksum equal to a full recomputation.
	if h.HopLimit <= 1 {
		require.False(t, dec)
		requireBytes(t, pkt, cp, "untouched")
		return
	}
	require.True(t, dec)
	h2, err := Parse(cp)
	require.NoError(t, err)
	require.Equal(t, h.HopLimit-1, h2.HopLimit)
	h2.HopLimit++
	require.Equal(t, h, h2)
	if h.Version == 4 {
		full := bytes.Clone(cp[:h.HeaderLen])
		full[10], full[11] = 0, 0
		require.Equal(t, ^refSum(full), binary.BigEndian.Uint16(cp[10:12]), "incremental = full checksum")
		requireBytes(t, pkt[:8], cp[:8], "unchanged bytes")
		requireBytes(t, pkt[12:], cp[12:], "unchanged bytes")
	} else {
		requireBytes(t, pkt[:7], cp[:7], "unchanged bytes")
		requireBytes(t, pkt[8:], cp[8:], "unchanged bytes")
	}
}
