package ippkt

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedPackets are the f.Add seeds of FuzzParse and FuzzICMPErrors; more
// seeds, among them crashers found before, are in testdata/fuzz.
func seedPackets() [][]byte {
	udp := udpSeg(1234, 53, []byte("seed"))
	return [][]byte{
		v4pkt(v4opts{proto: ProtoUDP, payload: udp}),
		v4pkt(v4opts{ttl: 1, proto: ProtoTCP, flagsFrag: flagDF, options: []byte{1, 1, 1, 0}, payload: repeat(20)}),
		v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagMF | 3, payload: repeat(8)}),
		withICMPChecksum(v4pkt(v4opts{proto: ProtoICMP, payload: icmpMsg(8, 0, 0, 1, 0, 1)})),
		withICMPChecksum(v4pkt(v4opts{proto: ProtoICMP, payload: icmpMsg(3, 1, repeat(28)...)})),
		v4pkt(v4opts{src: netip.MustParseAddr("192.0.2.1"), dst: netip.MustParseAddr("224.0.0.1"), proto: ProtoUDP, payload: udp}),
		v6pkt(v6opts{proto: ProtoUDP, payload: udp}),
		v6pkt(v6opts{hop: 1, exts: []ext{optsHdr(ProtoHopByHop, 0), optsHdr(ProtoDestOpts, 1), optsHdr(ProtoRouting, 0)}, proto: ProtoTCP, payload: repeat(20)}),
		v6pkt(v6opts{exts: []ext{fragHdr(0, true), ahHdr(1)}, proto: ProtoUDP, payload: udp}),
		v6pkt(v6opts{exts: []ext{fragHdr(9, false)}, proto: ProtoUDP, payload: repeat(8)}),
		withICMPChecksum(v6pkt(v6opts{proto: ProtoICMPv6, payload: icmpMsg(128, 0, 0, 1, 0, 1)})),
		withICMPChecksum(v6pkt(v6opts{proto: ProtoICMPv6, payload: icmpMsg(1, 0, repeat(44)...)})),
		v6pkt(v6opts{dst: netip.MustParseAddr("ff02::1"), src: src6, proto: ProtoUDP, payload: udp}),
		v6pkt(v6opts{proto: ProtoNoNext}),
		BuildUDP(netip.AddrPortFrom(src4, 9), netip.AddrPortFrom(dst4, 7), []byte("echo"), 64),
		BuildUDP(netip.AddrPortFrom(src6, 9), netip.AddrPortFrom(dst6, 7), []byte("echo"), 64),
	}
}

// refNoICMP is the reference for ErrNoICMP: whether a packet Parse accepted
// must not be answered with an ICMP error, by the rules of RFC 1812
// §4.3.2.7 and RFC 4443 §2.4(e), spelled out plainly.
func refNoICMP(pkt []byte, h Header, ptb bool) bool {
	if h.Fragment == LaterFragment {
		return true
	}
	src, dst := h.Src.AsSlice(), h.Dst.AsSlice()
	if h.Version == 4 {
		bcast := []byte{255, 255, 255, 255}
		switch {
		case src[0] == 0, src[0] == 127, src[0] >= 224:
			return true
		case dst[0] >= 224 && dst[0] < 240, string(dst) == string(bcast):
			return true
		case ptb && binary.BigEndian.Uint16(pkt[6:8])&flagDF == 0:
			return true
		case h.Proto == ProtoICMP:
			if h.HeaderLen == len(pkt) {
				return true
			}
			t := pkt[h.HeaderLen]
			return t == 3 || t == 4 || t == 5 || t == 11 || t == 12
		}
		return false
	}
	switch {
	case h.Src == netip.IPv6Unspecified(), h.Src == netip.IPv6Loopback(), src[0] == 0xff, h.Src.Is4In6():
		return true
	case dst[0] == 0xff && !ptb:
		return true
	case h.Proto == ProtoICMPv6:
		if h.HeaderLen == len(pkt) {
			return true
		}
		t := pkt[h.HeaderLen]
		return t < 128 || t == 137
	}
	return false
}

// FuzzICMPErrors runs every builder on any packet: each either refuses
// (Parse's error for a malformed packet, ErrNoICMP exactly when the
// reference says so, ErrNoReply) or returns a packet that Parse accepts,
// sent back to the original source, within the size bound, with right
// checksums.
func FuzzICMPErrors(f *testing.F) {
	for i, p := range seedPackets() {
		f.Add(p, uint16(i*97), uint8(i))
	}
	f.Fuzz(func(t *testing.T, pkt []byte, mtuSeed uint16, reasonSeed uint8) {
		checkBuilders(t, pkt, mtuSeed, reasonSeed)
		if fixed, ok := fixLengths(pkt); ok {
			checkBuilders(t, fixed, mtuSeed, reasonSeed)
		}
	})
}

func checkBuilders(t *testing.T, pkt []byte, mtuSeed uint16, reasonSeed uint8) {
	h, perr := Parse(pkt)
	reason := Reason(1 + reasonSeed%4)
	// Expected type and code of TimeExceeded, DestinationUnreachable and
	// PacketTooBig, by family.
	from, mtu := from6, 1280+int(mtuSeed)
	teType, duType, duCode, ptbType, ptbCode := uint8(3), uint8(1), unreachCodes[reason].v6, uint8(2), uint8(0)
	if perr == nil && h.Version == 4 {
		from, mtu = from4, 68+int(mtuSeed)%(65536-68)
		teType, duType, duCode, ptbType, ptbCode = 11, 3, unreachCodes[reason].v4, 3, icmpv4CodeFragNeeded
	}

	for _, b := range []struct {
		name      string
		build     func() ([]byte, error)
		typ, code uint8
		rest      uint32
		ptb       bool
	}{
		{"TimeExceeded", func() ([]byte, error) { return TimeExceeded(pkt, from) }, teType, 0, 0, false},
		{"DestinationUnreachable", func() ([]byte, error) { return DestinationUnreachable(pkt, from, reason) }, duType, duCode, 0, false},
		{"PacketTooBig", func() ([]byte, error) { return PacketTooBig(pkt, from, mtu) }, ptbType, ptbCode, uint32(mtu), true},
	} {
		res, err := b.build()
		if perr != nil {
			require.Equal(t, perr, err, b.name)
			continue
		}
		if refNoICMP(pkt, h, b.ptb) {
			require.ErrorIs(t, err, ErrNoICMP, b.name)
			continue
		}
		require.NoError(t, err, b.name)
		checkICMPError(t, pkt, res, from, b.typ, b.code, b.rest)
		// An ICMP error is never answered.
		_, err = TimeExceeded(res, from)
		require.ErrorIs(t, err, ErrNoICMP, b.name)
	}

	// The responders: a reply is a valid packet back to the source.
	for name, reply := range map[string]func([]byte) ([]byte, error){"EchoReply": EchoReply, "UDPReply": UDPReply} {
		res, err := reply(pkt)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrNoReply), "%s: %v", name, err)
			continue
		}
		require.NoError(t, perr)
		rh, err := Parse(res)
		require.NoError(t, err, name)
		require.Equal(t, h.Src, rh.Dst, name)
		require.Equal(t, h.Dst, rh.Src, name)
		require.Equal(t, h.Proto, rh.Proto, name)
		require.Equal(t, len(pkt)-h.HeaderLen, len(res)-rh.HeaderLen, "same upper-layer length")
	}
}
