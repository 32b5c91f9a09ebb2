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

// checkICMPError checks that res is an ICMP error from `from` to orig's
// source, with valid checksums, type typ and code, bytes 4–7 rest and
// quoting orig as far as the size bound allows. It returns the ICMP message
// as parsed by x/net/icmp.
func checkICMPError(t *testing.T, orig, res []byte, from netip.Addr, typ, code uint8, rest uint32) *icmp.Message {
	t.Helper()
	oh, err := Parse(orig)
	require.NoError(t, err)
	h, err := Parse(res)
	require.NoError(t, err, "the ICMP error is a valid packet")
	require.Equal(t, from, h.Src)
	require.Equal(t, oh.Src, h.Dst)
	require.Equal(t, uint8(ICMPHopLimit), h.HopLimit)
	require.Equal(t, NotFragment, h.Fragment)

	bound, proto := MaxICMPv6ErrorLen, ProtoICMPv6
	var sum uint16
	msg := res[h.HeaderLen:]
	if h.Version == 4 {
		bound, proto = MaxICMPv4ErrorLen, ProtoICMP
		require.Equal(t, 20, h.HeaderLen)
		sum = refSum(msg)
		// x/net/ipv4 agrees on the header.
		ih, err := ipv4.ParseHeader(res)
		require.NoError(t, err)
		require.Equal(t, len(res), ih.TotalLen)
		require.Equal(t, from.AsSlice(), []byte(ih.Src.To4()))
	} else {
		require.Equal(t, 40, h.HeaderLen)
		sum = refSum(refPseudo(h.Src, h.Dst, ProtoICMPv6, len(msg)), msg)
		ih, err := ipv6.ParseHeader(res)
		require.NoError(t, err)
		require.Equal(t, len(msg), ih.PayloadLen)
	}
	require.Equal(t, uint8(proto), h.Proto)
	require.Equal(t, uint16(0xffff), sum, "ICMP checksum")
	require.LessOrEqual(t, len(res), bound)
	require.Equal(t, min(bound, h.HeaderLen+8+len(orig)), len(res), "quotes as much as fits")
	requireBytes(t, orig[:len(msg)-8], msg[8:], "quote")
	require.Equal(t, typ, msg[0])
	require.Equal(t, code, msg[1])
	require.Equal(t, rest, binary.BigEndian.Uint32(msg[4:8]))

	m, err := icmp.ParseMessage(proto, msg)
	require.NoError(t, err)
	return m
}

func TestTimeExceeded(t *testing.T) {
	orig4 := v4pkt(v4opts{ttl: 1, proto: ProtoUDP, payload: udpSeg(1, 2, []byte("hello"))})
	res, err := TimeExceeded(orig4, from4)
	require.NoError(t, err)
	m := checkICMPError(t, orig4, res, from4, 11, 0, 0)
	require.Equal(t, ipv4.ICMPTypeTimeExceeded, m.Type)
	require.IsType(t, &icmp.TimeExceeded{}, m.Body)

	orig6 := v6pkt(v6opts{hop: 1, exts: []ext{optsHdr(ProtoHopByHop, 0)}, proto: ProtoTCP, payload: repeat(20)})
	res, err = TimeExceeded(orig6, from6)
	require.NoError(t, err)
	m = checkICMPError(t, orig6, res, from6, 3, 0, 0)
	require.Equal(t, ipv6.ICMPTypeTimeExceeded, m.Type)
	require.IsType(t, &icmp.TimeExceeded{}, m.Body)
}

func TestPacketTooBig(t *testing.T) {
	orig4 := v4pkt(v4opts{proto: ProtoTCP, flagsFrag: flagDF, payload: repeat(1400)})
	res, err := PacketTooBig(orig4, from4, 1280)
	require.NoError(t, err)
	m := checkICMPError(t, orig4, res, from4, 3, 4, 1280)
	require.Equal(t, ipv4.ICMPTypeDestinationUnreachable, m.Type)
	require.Len(t, res, MaxICMPv4ErrorLen)

	orig6 := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1400))})
	res, err = PacketTooBig(orig6, from6, 1300)
	require.NoError(t, err)
	m = checkICMPError(t, orig6, res, from6, 2, 0, 1300)
	require.Equal(t, ipv6.ICMPTypePacketTooBig, m.Type)
	require.Equal(t, 1300, m.Body.(*icmp.PacketTooBig).MTU)
	require.Len(t, res, MaxICMPv6ErrorLen)

	// Path MTU discovery works for multicast too (RFC 4443 §2.4(e.3)).
	mcast := v6pkt(v6opts{src: src6, dst: netip.MustParseAddr("ff0e::1"), proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1400))})
	res, err = PacketTooBig(mcast, from6, 1280)
	require.NoError(t, err)
	checkICMPError(t, mcast, res, from6, 2, 0, 1280)
	_, err = TimeExceeded(mcast, from6)
	require.ErrorIs(t, err, ErrNoICMP)

	// IPv4 without DF is fragmented, not answered.
	noDF := v4pkt(v4opts{proto: ProtoTCP, payload: repeat(1400)})
	_, err = PacketTooBig(noDF, from4, 1280)
	require.ErrorIs(t, err, ErrNoICMP)

	// MTU bounds.
	for _, mtu := range []int{-1, 0, 67, 65536} {
		_, err := PacketTooBig(orig4, from4, mtu)
		require.Error(t, err, "mtu %d", mtu)
		require.False(t, errors.Is(err, ErrNoICMP) || errors.Is(err, ErrMalformed))
	}
	for _, mtu := range []int{68, 65535} {
		_, err := PacketTooBig(orig4, from4, mtu)
		require.NoError(t, err, "mtu %d", mtu)
	}
	for _, mtu := range []int{-1, 0, 1279, 1 << 32} {
		_, err := PacketTooBig(orig6, from6, mtu)
		require.Error(t, err, "mtu %d", mtu)
		require.False(t, errors.Is(err, ErrNoICMP) || errors.Is(err, ErrMalformed))
	}
	res, err = PacketTooBig(orig6, from6, 1<<32-1)
	require.NoError(t, err)
	checkICMPError(t, orig6, res, from6, 2, 0, 1<<32-1)
}

func TestDestinationUnreachable(t *testing.T) {
	orig4 := v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(1, 2, []byte("x"))})
	orig6 := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, []byte("x"))})
	for _, tc := range []struct {
		reason       Reason
		code4, code6 uint8
	}{
		{AdminProhibited, 13, 1},
		{SourcePolicy, 13, 5},
		{NoRoute, 0, 0},
		{AddressUnreachable, 1, 3},
	} {
		t.Run(tc.reason.String(), func(t *testing.T) {
			res, err := DestinationUnreachable(orig4, from4, tc.reason)
			require.NoError(t, err)
			m := checkICMPError(t, orig4, res, from4, 3, tc.code4, 0)
			require.Equal(t, ipv4.ICMPTypeDestinationUnreachable, m.Type)
			require.Equal(t, int(tc.code4), m.Code)

			res, err = DestinationUnreachable(orig6, from6, tc.reason)
			require.NoError(t, err)
			m = checkICMPError(t, orig6, res, from6, 1, tc.code6, 0)
			require.Equal(t, ipv6.ICMPTypeDestinationUnreachable, m.Type)
			require.IsType(t, &icmp.DstUnreach{}, m.Body)
		})
	}
	for _, r := range []Reason{0, 5, 255} {
		_, err := DestinationUnreachable(orig4, from4, r)
		require.Error(t, err)
		require.False(t, errors.Is(err, ErrNoICMP))
	}
	require.Equal(t, "Reason(9)", Reason(9).String())
}

func TestICMPErrorSizeBounds(t *testing.T) {
	for _, n := range []int{0, 1, 547, 548, 549, 1000, 65000} {
		orig := v4pkt(v4opts{proto: ProtoTCP, flagsFrag: flagDF, payload: repeat(n)})
		res, err := TimeExceeded(orig, from4)
		require.NoError(t, err)
		checkICMPError(t, orig, res, from4, 11, 0, 0)
		require.Equal(t, min(576, 28+len(orig)), len(res))
	}
	for _, n := range []int{0, 1, 1191, 1192, 1193, 1500, 65000} {
		orig := v6pkt(v6opts{proto: ProtoTCP, payload: repeat(n)})
		res, err := TimeExceeded(orig, from6)
		require.NoError(t, err)
		checkICMPError(t, orig, res, from6, 3, 0, 0)
		require.Equal(t, min(1280, 48+len(orig)), len(res))
	}
}

func TestNoICMP(t *testing.T) {
	icmp4 := func(typ uint8) []byte {
		return withICMPChecksum(v4pkt(v4opts{proto: ProtoICMP, payload: icmpMsg(typ, 0, repeat(32)...)}))
	}
	icmp6 := func(typ uint8) []byte {
		return withICMPChecksum(v6pkt(v6opts{proto: ProtoICMPv6, payload: icmpMsg(typ, 0, repeat(32)...)}))
	}
	udp4 := func(src, dst string) []byte {
		return v4pkt(v4opts{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: ProtoUDP, flagsFrag: flagDF, payload: udpSeg(1, 2, nil)})
	}
	udp6 := func(src, dst string) []byte {
		return v6pkt(v6opts{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	}
	for name, pkt := range map[string][]byte{
		"icmpv4 dest unreachable":  icmp4(3),
		"icmpv4 source quench":     icmp4(4),
		"icmpv4 redirect":          icmp4(5),
		"icmpv4 time exceeded":     icmp4(11),
		"icmpv4 parameter problem": icmp4(12),
		"icmpv4 without header":    v4pkt(v4opts{proto: ProtoICMP}),
		"icmpv6 dest unreachable":  icmp6(1),
		"icmpv6 packet too big":    icmp6(2),
		"icmpv6 time exceeded":     icmp6(3),
		"icmpv6 parameter problem": icmp6(4),
		"icmpv6 unknown error 127": icmp6(127),
		"icmpv6 redirect":          icmp6(137),
		"icmpv6 without header":    v6pkt(v6opts{proto: ProtoICMPv6}),
		"icmpv6 error behind ext":  v6pkt(v6opts{exts: []ext{optsHdr(ProtoDestOpts, 0)}, proto: ProtoICMPv6, payload: icmpMsg(1, 4, 0, 0, 0, 0)}),
		"v4 later fragment":        v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagMF | 10, payload: repeat(8)}),
		"v6 later fragment":        v6pkt(v6opts{exts: []ext{fragHdr(10, true)}, proto: ProtoUDP, payload: repeat(8)}),
		"v4 from unspecified":      udp4("0.0.0.0", "192.0.2.1"),
		"v4 from this network":     udp4("0.1.2.3", "192.0.2.1"),
		"v4 from loopback":         udp4("127.0.0.1", "192.0.2.1"),
		"v4 from multicast":        udp4("224.0.0.5", "192.0.2.1"),
		"v4 from class e":          udp4("240.0.0.1", "192.0.2.1"),
		"v4 from broadcast":        udp4("255.255.255.255", "192.0.2.1"),
		"v4 to multicast":          udp4("192.0.2.1", "239.1.2.3"),
		"v4 to link-local mcast":   udp4("192.0.2.1", "224.0.0.1"),
		"v4 to broadcast":          udp4("192.0.2.1", "255.255.255.255"),
		"v6 from unspecified":      udp6("::", "2001:db8::1"),
		"v6 from loopback":         udp6("::1", "2001:db8::1"),
		"v6 from multicast":        udp6("ff02::1", "2001:db8::1"),
		"v6 to multicast":          udp6("2001:db8::1", "ff02::1"),
		"v6 to global multicast":   udp6("2001:db8::1", "ff0e::1"),
	} {
		t.Run(name, func(t *testing.T) {
			var from netip.Addr
			if pkt[0]>>4 == 4 {
				from = from4
			} else {
				from = from6
			}
			_, err := Parse(pkt)
			require.NoError(t, err)
			_, err = TimeExceeded(pkt, from)
			require.ErrorIs(t, err, ErrNoICMP)
			_, err = DestinationUnreachable(pkt, from, NoRoute)
			require.ErrorIs(t, err, ErrNoICMP)
			if name != "v6 to multicast" && name != "v6 to global multicast" {
				_, err = PacketTooBig(pkt, from, 1280)
				require.ErrorIs(t, err, ErrNoICMP)
			}
		})
	}

	// Answered: ICMP informational messages and first fragments.
	for name, pkt := range map[string][]byte{
		"icmpv4 echo request":   icmp4(8),
		"icmpv4 echo reply":     icmp4(0),
		"icmpv4 type 40":        icmp4(40),
		"icmpv6 echo request":   icmp6(128),
		"icmpv6 type 200":       icmp6(200),
		"v4 first fragment":     v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagMF, payload: repeat(8)}),
		"v6 first fragment":     v6pkt(v6opts{exts: []ext{fragHdr(0, true)}, proto: ProtoUDP, payload: repeat(8)}),
		"v4 from link-local":    udp4("169.254.1.1", "192.0.2.1"),
		"v6 from link-local":    udp6("fe80::1", "2001:db8::1"),
		"v6 to v4-mapped mcast": udp6("2001:db8::1", "::ffff:224.0.0.1"),
		"v4 to class e":         udp4("192.0.2.1", "240.0.0.1"),
	} {
		from := from4
		if pkt[0]>>4 == 6 {
			from = from6
		}
		_, err := TimeExceeded(pkt, from)
		require.NoError(t, err, name)
	}
}

func TestICMPErrorBadInput(t *testing.T) {
	orig4 := v4pkt(v4opts{proto: ProtoUDP, flagsFrag: flagDF, payload: udpSeg(1, 2, nil)})
	orig6 := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, nil)})

	// Malformed packets get Parse's error.
	for _, pkt := range [][]byte{nil, orig4[:25], orig6[:45], {0x50}} {
		_, err := TimeExceeded(pkt, from4)
		require.ErrorIs(t, err, ErrMalformed)
		_, err = PacketTooBig(pkt, from6, 1280)
		require.ErrorIs(t, err, ErrMalformed)
		_, err = DestinationUnreachable(pkt, from4, NoRoute)
		require.ErrorIs(t, err, ErrMalformed)
	}

	// from must be a unicast address of the packet's family.
	for _, tc := range []struct {
		pkt  []byte
		from netip.Addr
	}{
		{orig4, from6},
		{orig6, from4},
		{orig4, netip.Addr{}},
		{orig6, netip.MustParseAddr("::ffff:192.0.2.254")},
		{orig4, netip.MustParseAddr("0.0.0.0")},
		{orig4, netip.MustParseAddr("224.0.0.1")},
		{orig6, netip.MustParseAddr("ff02::1")},
		{orig6, netip.MustParseAddr("::")},
	} {
		_, err := TimeExceeded(tc.pkt, tc.from)
		require.Error(t, err, "from %v", tc.from)
		require.False(t, errors.Is(err, ErrNoICMP) || errors.Is(err, ErrMalformed))
	}

	// A v4-mapped or zoned from is used as the plain address.
	res, err := TimeExceeded(orig4, netip.MustParseAddr("::ffff:192.0.2.254"))
	require.NoError(t, err)
	checkICMPError(t, orig4, res, from4, 11, 0, 0)
	res, err = TimeExceeded(orig6, from6.WithZone("tun0"))
	require.NoError(t, err)
	checkICMPError(t, orig6, res, from6, 3, 0, 0)
}

func TestICMPErrorNotAnsweredByICMPError(t *testing.T) {
	// An ICMP error is never answered, including our own.
	orig := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(2000))})
	res, err := PacketTooBig(orig, from6, 1280)
	require.NoError(t, err)
	_, err = TimeExceeded(res, from6)
	require.ErrorIs(t, err, ErrNoICMP)

	orig = v4pkt(v4opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(2000))})
	res, err = DestinationUnreachable(orig, from4, AdminProhibited)
	require.NoError(t, err)
	_, err = DestinationUnreachable(res, from4, AdminProhibited)
	require.ErrorIs(t, err, ErrNoICMP)
}

func BenchmarkTimeExceeded(b *testing.B) {
	orig := v6pkt(v6opts{proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1400))})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TimeExceeded(orig, from6); err != nil {
			b.Fatal(err)
		}
	}
}
