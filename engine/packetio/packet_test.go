package packetio

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Addresses a proxy might assign to clients (RFC 2544's benchmarking range
// and a ULA), and where the netstack host is by default.
var (
	client4 = netip.MustParseAddr("198.18.0.7")
	client6 = netip.MustParseAddr("fd00::7")
	host4   = netip.MustParseAddr("192.0.2.1")
	host6   = netip.MustParseAddr("2001:db8::1")
)

const echoPort = DefaultUDPEchoPort

func tcpipAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// ipPacket wraps seg, whose checksum field at csumOff (or -1) is filled in,
// in an IPv4 or IPv6 header from src to dst.
func ipPacket(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, seg []byte, csumOff int) []byte {
	var b []byte
	if src.Is4() {
		b = make([]byte, header.IPv4MinimumSize+len(seg))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         32,
			Protocol:    uint8(proto),
			SrcAddr:     tcpipAddr(src),
			DstAddr:     tcpipAddr(dst),
			ID:          0x1234,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], seg)
	} else {
		b = make([]byte, header.IPv6MinimumSize+len(seg))
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(len(seg)),
			TransportProtocol: proto,
			HopLimit:          32,
			SrcAddr:           tcpipAddr(src),
			DstAddr:           tcpipAddr(dst),
		})
		copy(b[header.IPv6MinimumSize:], seg)
	}
	if csumOff < 0 {
		return b
	}
	t := b[len(b)-len(seg):]
	t[csumOff], t[csumOff+1] = 0, 0
	var xsum uint16
	if src.Is6() || proto != header.ICMPv4ProtocolNumber {
		xsum = header.PseudoHeaderChecksum(proto, tcpipAddr(src), tcpipAddr(dst), uint16(len(seg)))
	}
	xsum = ^checksum.Checksum(t, xsum)
	if xsum == 0 && proto == header.UDPProtocolNumber {
		xsum = 0xffff
	}
	checksum.Put(t[csumOff:], xsum)
	return b
}

// echoRequest is an ICMP or ICMPv6 echo request.
func echoRequest(src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	seg := make([]byte, 8+len(payload))
	if src.Is4() {
		icmp := header.ICMPv4(seg)
		icmp.SetType(header.ICMPv4Echo)
		icmp.SetIdent(id)
		icmp.SetSequence(seq)
		copy(icmp.Payload(), payload)
		return ipPacket(src, dst, header.ICMPv4ProtocolNumber, seg, 2)
	}
	icmp := header.ICMPv6(seg)
	icmp.SetType(header.ICMPv6EchoRequest)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	copy(seg[8:], payload)
	return ipPacket(src, dst, header.ICMPv6ProtocolNumber, seg, 2)
}

// udpPacket is a UDP datagram with a valid checksum.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	seg := make([]byte, header.UDPMinimumSize+len(payload))
	header.UDP(seg).Encode(&header.UDPFields{
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Length:  uint16(len(seg)),
	})
	copy(seg[header.UDPMinimumSize:], payload)
	return ipPacket(src.Addr(), dst.Addr(), header.UDPProtocolNumber, seg, 6)
}

// parsed is what tests look at in a packet read from a Device.
type parsed struct {
	src, dst netip.Addr
	ttl      uint8 // TTL or Hop Limit
	proto    tcpip.TransportProtocolNumber
	// ICMP and ICMPv6
	icmpType, icmpCode uint8
	id, seq            uint16
	// UDP
	srcPort, dstPort uint16
	payload          []byte // ICMP echo data, UDP payload, or ICMP error body
}

// parsePacket parses b, failing t unless it is a well-formed IPv4 or IPv6
// packet without options or extension headers whose checksums are right.
func parsePacket(t testing.TB, b []byte) parsed {
	t.Helper()
	require.NotEmpty(t, b)
	var p parsed
	var seg []byte
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		require.True(t, ip.IsValid(len(b)), "invalid IPv4 header")
		require.Equal(t, int(ip.TotalLength()), len(b), "IPv4 total length")
		require.True(t, ip.IsChecksumValid(), "IPv4 header checksum")
		require.EqualValues(t, header.IPv4MinimumSize, ip.HeaderLength(), "IPv4 options")
		p.src = netip.AddrFrom4([4]byte(ip.SourceAddressSlice()))
		p.dst = netip.AddrFrom4([4]byte(ip.DestinationAddressSlice()))
		p.ttl = ip.TTL()
		p.proto = ip.TransportProtocol()
		seg = ip.Payload()
	case 6:
		ip := header.IPv6(b)
		require.True(t, ip.IsValid(len(b)), "invalid IPv6 header")
		require.Equal(t, header.IPv6MinimumSize+int(ip.PayloadLength()), len(b), "IPv6 payload length")
		p.src = netip.AddrFrom16([16]byte(ip.SourceAddressSlice()))
		p.dst = netip.AddrFrom16([16]byte(ip.DestinationAddressSlice()))
		p.ttl = ip.HopLimit()
		p.proto = ip.TransportProtocol()
		seg = ip.Payload()
	default:
		t.Fatalf("IP version %d", b[0]>>4)
	}
	pseudo := header.PseudoHeaderChecksum(p.proto, tcpipAddr(p.src), tcpipAddr(p.dst), uint16(len(seg)))
	switch p.proto {
	case header.ICMPv4ProtocolNumber:
		require.GreaterOrEqual(t, len(seg), header.ICMPv4MinimumSize)
		require.Equal(t, uint16(0xffff), checksum.Checksum(seg, 0), "ICMP checksum")
		icmp := header.ICMPv4(seg)
		p.icmpType, p.icmpCode = uint8(icmp.Type()), uint8(icmp.Code())
		p.id, p.seq = icmp.Ident(), icmp.Sequence()
		p.payload = seg[8:]
	case header.ICMPv6ProtocolNumber:
		require.GreaterOrEqual(t, len(seg), header.ICMPv6MinimumSize)
		require.Equal(t, uint16(0xffff), checksum.Checksum(seg, pseudo), "ICMPv6 checksum")
		icmp := header.ICMPv6(seg)
		p.icmpType, p.icmpCode = uint8(icmp.Type()), uint8(icmp.Code())
		p.id, p.seq = icmp.Ident(), icmp.Sequence()
		p.payload = seg[8:]
	case header.UDPProtocolNumber:
		require.GreaterOrEqual(t, len(seg), header.UDPMinimumSize)
		u := header.UDP(seg)
		require.Equal(t, len(seg), int(u.Length()), "UDP length")
		require.NotZero(t, u.Checksum(), "UDP checksum absent")
		require.Equal(t, uint16(0xffff), checksum.Checksum(seg, pseudo), "UDP checksum")
		p.srcPort, p.dstPort = u.SourcePort(), u.DestinationPort()
		p.payload = u.Payload()
	default:
		t.Fatalf("unexpected protocol %d", p.proto)
	}
	return p
}

// isEchoReply reports whether p is the ICMP or ICMPv6 echo reply type.
func (p parsed) isEchoReply() bool {
	if p.proto == header.ICMPv4ProtocolNumber {
		return p.icmpType == uint8(header.ICMPv4EchoReply)
	}
	return p.proto == header.ICMPv6ProtocolNumber && p.icmpType == uint8(header.ICMPv6EchoReply)
}

// newBufs returns BatchSize buffers of MTU bytes for ReadPackets.
func newBufs(d Device) ([][]byte, []int) {
	bufs := make([][]byte, d.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, d.MTU())
	}
	return bufs, make([]int, len(bufs))
}

func TestParsePacketRoundTrip(t *testing.T) {
	// The helpers must agree with each other before the backends are judged
	// by them.
	p := parsePacket(t, echoRequest(client4, host4, 1, 2, []byte("x")))
	require.Equal(t, parsed{src: client4, dst: host4, ttl: 32, proto: header.ICMPv4ProtocolNumber,
		icmpType: uint8(header.ICMPv4Echo), id: 1, seq: 2, payload: []byte("x")}, p)
	p = parsePacket(t, echoRequest(client6, host6, 3, 4, []byte("yz")))
	require.Equal(t, uint8(header.ICMPv6EchoRequest), p.icmpType)
	require.Equal(t, []byte("yz"), p.payload)
	p = parsePacket(t, udpPacket(netip.AddrPortFrom(client6, 5), netip.AddrPortFrom(host6, 7), []byte("u")))
	require.Equal(t, uint16(5), p.srcPort)
	require.Equal(t, []byte("u"), p.payload)
}
