package ippkt

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// checkUDP checks that pkt is a UDP packet from src to dst carrying payload,
// with a UDP checksum right by refSum.
func checkUDP(t *testing.T, pkt []byte, src, dst netip.AddrPort, payload []byte, hop uint8) {
	t.Helper()
	h, err := Parse(pkt)
	require.NoError(t, err)
	require.Equal(t, uint8(ProtoUDP), h.Proto)
	require.Equal(t, src.Addr(), h.Src)
	require.Equal(t, dst.Addr(), h.Dst)
	require.Equal(t, hop, h.HopLimit)
	seg := pkt[h.HeaderLen:]
	require.Equal(t, src.Port(), binary.BigEndian.Uint16(seg[0:]))
	require.Equal(t, dst.Port(), binary.BigEndian.Uint16(seg[2:]))
	require.Equal(t, len(seg), int(binary.BigEndian.Uint16(seg[4:])))
	requireBytes(t, payload, seg[8:], "payload")
	require.NotZero(t, binary.BigEndian.Uint16(seg[6:]), "checksum present")
	require.Equal(t, uint16(0xffff), refSum(refPseudo(h.Src, h.Dst, ProtoUDP, len(seg)), seg))
}

func TestBuildUDP(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.AddrPort }{
		{netip.AddrPortFrom(src4, 1234), netip.AddrPortFrom(dst4, 53)},
		{netip.AddrPortFrom(src6, 40000), netip.AddrPortFrom(dst6, 443)},
	} {
		for _, n := range []int{0, 1, 2, 1000, 65535 - 8 - 20} {
			payload := repeat(n)
			pkt := BuildUDP(tc.src, tc.dst, payload, 7)
			checkUDP(t, pkt, tc.src, tc.dst, payload, 7)
		}
	}
	require.Panics(t, func() { BuildUDP(netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(dst6, 1), nil, 1) })
	require.Panics(t, func() { BuildUDP(netip.AddrPort{}, netip.AddrPortFrom(dst4, 1), nil, 1) })
	require.Panics(t, func() {
		BuildUDP(netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(dst4, 1), make([]byte, 65535-8-20+1), 1)
	})
	require.Panics(t, func() { BuildUDP(netip.AddrPortFrom(src6, 1), netip.AddrPortFrom(dst6, 1), make([]byte, 65535-8+1), 1) })
	require.NotPanics(t, func() { BuildUDP(netip.AddrPortFrom(src6, 1), netip.AddrPortFrom(dst6, 1), make([]byte, 65535-8), 1) })
}

func TestBuildUDPChecksumNeverZero(t *testing.T) {
	// Search for a payload whose UDP checksum computes to 0: it must be
	// sent as 0xffff (RFC 768), never as 0, "no checksum".
	src, dst := netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(dst4, 2)
	for v := range 1 << 16 {
		payload := []byte{byte(v >> 8), byte(v)}
		pkt := BuildUDP(src, dst, payload, 64)
		cs := binary.BigEndian.Uint16(pkt[26:28])
		require.NotZero(t, cs)
		if cs == 0xffff {
			checkUDP(t, pkt, src, dst, payload, 64)
			return
		}
	}
	t.Fatal("no payload with checksum 0xffff found")
}

func TestBuildICMPEcho(t *testing.T) {
	for _, tc := range []struct {
		src, dst netip.Addr
		request  bool
		typ      icmp.Type
	}{
		{src4, dst4, true, ipv4.ICMPTypeEcho},
		{src4, dst4, false, ipv4.ICMPTypeEchoReply},
		{src6, dst6, true, ipv6.ICMPTypeEchoRequest},
		{src6, dst6, false, ipv6.ICMPTypeEchoReply},
	} {
		pkt := BuildICMPEcho(tc.src, tc.dst, 0x1234, 7, []byte("ping!"), 9, tc.request)
		h, err := Parse(pkt)
		require.NoError(t, err)
		require.Equal(t, tc.src, h.Src)
		require.Equal(t, tc.dst, h.Dst)
		require.Equal(t, uint8(9), h.HopLimit)
		msg := pkt[h.HeaderLen:]
		var proto int
		if h.Version == 4 {
			proto = ProtoICMP
			require.Equal(t, uint16(0xffff), refSum(msg))
		} else {
			proto = ProtoICMPv6
			require.Equal(t, uint16(0xffff), refSum(refPseudo(h.Src, h.Dst, ProtoICMPv6, len(msg)), msg))
		}
		require.Equal(t, uint8(proto), h.Proto)
		m, err := icmp.ParseMessage(proto, msg)
		require.NoError(t, err)
		require.Equal(t, tc.typ, m.Type)
		require.Equal(t, &icmp.Echo{ID: 0x1234, Seq: 7, Data: []byte("ping!")}, m.Body)
	}
	require.Panics(t, func() { BuildICMPEcho(src4, dst6, 1, 1, nil, 1, true) })
}

func TestEchoReply(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.Addr }{{src4, dst4}, {src6, dst6}} {
		for _, n := range []int{0, 1, 56, 1232} {
			req := BuildICMPEcho(tc.src, tc.dst, 77, uint16(n), repeat(n), 3, true)
			res, err := EchoReply(req)
			require.NoError(t, err)
			require.Equal(t, BuildICMPEcho(tc.dst, tc.src, 77, uint16(n), repeat(n), ICMPHopLimit, false)[12:], res[12:],
				"the reply, but for the IPv4 ID and checksum")

			_, err = EchoReply(res)
			require.ErrorIs(t, err, ErrNoReply, "a reply is not answered")
		}
	}

	bad := BuildICMPEcho(src4, dst4, 1, 1, []byte("x"), 64, true)
	bad[len(bad)-1] ^= 0xff
	_, err := EchoReply(bad)
	require.ErrorIs(t, err, ErrMalformed)
	bad6 := BuildICMPEcho(src6, dst6, 1, 1, []byte("x"), 64, true)
	copy(bad6[8:24], dst6.AsSlice()) // the pseudo-header changes
	_, err = EchoReply(bad6)
	require.ErrorIs(t, err, ErrMalformed)

	for name, pkt := range map[string][]byte{
		"udp":            BuildUDP(netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(dst4, 2), nil, 64),
		"icmpv4 in ipv6": v6pkt(v6opts{proto: ProtoICMP, payload: icmpMsg(8, 0, 0, 0, 0, 0)}),
		"short":          withICMPChecksum(v4pkt(v4opts{proto: ProtoICMP, payload: []byte{8, 0, 0, 0}})),
		"to multicast":   BuildICMPEcho(src6, netip.MustParseAddr("ff02::1"), 1, 1, nil, 64, true),
		"to broadcast":   BuildICMPEcho(src4, netip.MustParseAddr("255.255.255.255"), 1, 1, nil, 64, true),
		"from multicast": BuildICMPEcho(netip.MustParseAddr("ff02::1"), dst6, 1, 1, nil, 64, true),
		"fragment":       v4pkt(v4opts{proto: ProtoICMP, flagsFrag: flagMF, payload: icmpMsg(8, 0, 0, 0, 0, 0)}),
	} {
		_, err := EchoReply(pkt)
		require.ErrorIs(t, err, ErrNoReply, name)
	}
	_, err = EchoReply([]byte{0x45})
	require.ErrorIs(t, err, ErrMalformed)
}

func TestUDPReply(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.AddrPort }{
		{netip.AddrPortFrom(src4, 5000), netip.AddrPortFrom(dst4, 7)},
		{netip.AddrPortFrom(src6, 5000), netip.AddrPortFrom(dst6, 7)},
	} {
		for _, n := range []int{0, 1, 1200} {
			pkt := BuildUDP(tc.src, tc.dst, repeat(n), 5)
			res, err := UDPReply(pkt)
			require.NoError(t, err)
			checkUDP(t, res, tc.dst, tc.src, repeat(n), ICMPHopLimit)
		}
	}

	// IPv4 may omit the checksum; IPv6 may not (RFC 8200 §8.1).
	noSum := v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(9, 10, []byte("abc"))})
	res, err := UDPReply(noSum)
	require.NoError(t, err)
	checkUDP(t, res, netip.AddrPortFrom(dst4, 10), netip.AddrPortFrom(src4, 9), []byte("abc"), ICMPHopLimit)
	_, err = UDPReply(v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(9, 10, []byte("abc"))}))
	require.ErrorIs(t, err, ErrMalformed)

	badSum := BuildUDP(netip.AddrPortFrom(src6, 1), netip.AddrPortFrom(dst6, 2), []byte("abc"), 64)
	badSum[len(badSum)-1]++
	_, err = UDPReply(badSum)
	require.ErrorIs(t, err, ErrMalformed)

	badLen := BuildUDP(netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(dst4, 2), []byte("abc"), 64)
	badLen[25]-- // UDP Length 10, IP payload 11
	_, err = UDPReply(badLen)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = UDPReply(v4pkt(v4opts{proto: ProtoUDP, payload: repeat(7)}))
	require.ErrorIs(t, err, ErrMalformed, "shorter than a UDP header")

	for name, pkt := range map[string][]byte{
		"icmp":         BuildICMPEcho(src4, dst4, 1, 1, nil, 64, true),
		"fragment":     v6pkt(v6opts{exts: []ext{fragHdr(0, true)}, proto: ProtoUDP, payload: udpSeg(1, 2, nil)}),
		"to multicast": BuildUDP(netip.AddrPortFrom(src4, 1), netip.AddrPortFrom(netip.MustParseAddr("224.0.0.251"), 5353), nil, 1),
	} {
		_, err := UDPReply(pkt)
		require.ErrorIs(t, err, ErrNoReply, name)
	}
	_, err = UDPReply(nil)
	require.True(t, errors.Is(err, ErrMalformed))
}

func BenchmarkUDPReply(b *testing.B) {
	pkt := BuildUDP(netip.AddrPortFrom(src6, 5000), netip.AddrPortFrom(dst6, 7), repeat(1200), 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := UDPReply(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
