package ippkt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Builders of whole packets for replies and tests. They allocate the packet
// they return. Packets carry no IPv4 options and no IPv6 extension headers.

// ErrNoReply: EchoReply or UDPReply was given a packet it does not answer:
// not an echo request / not UDP, a fragment, or one sent to a multicast or
// broadcast address (the reply needs a unicast source).
var ErrNoReply = errors.New("ippkt: packet does not call for a reply")

const (
	icmpHeaderLen = 8
	udpHeaderLen  = header.UDPMinimumSize

	icmpv4EchoReply   = 0
	icmpv4EchoRequest = 8
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

// ipv4ID numbers the IPv4 packets built here. DF is clear on them, so the
// Identification must differ between packets that may be in flight
// together (RFC 6864 §4.2); a counter does.
var ipv4ID atomic.Uint32

func ipHeaderLen(version int) int {
	if version == 4 {
		return header.IPv4MinimumSize
	}
	return header.IPv6MinimumSize
}

// newPacket allocates a packet from src to dst with an IP header followed by
// payloadLen zero bytes for protocol proto. The IPv4 header checksum is set.
// It panics if the packet would exceed 65535 bytes (IPv4) or its payload
// 65535 bytes (IPv6): without jumbograms, no length field can say more.
func newPacket(src, dst netip.Addr, proto, hopLimit uint8, payloadLen int) []byte {
	if src.Is4() {
		total := header.IPv4MinimumSize + payloadLen
		if total > 0xffff {
			panic(fmt.Sprintf("ippkt: IPv4 packet of %d bytes", total))
		}
		pkt := make([]byte, total)
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(total),
			ID:          uint16(ipv4ID.Add(1)),
			TTL:         hopLimit,
			Protocol:    proto,
			SrcAddr:     tcpipAddr(src),
			DstAddr:     tcpipAddr(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		return pkt
	}
	if payloadLen > 0xffff {
		panic(fmt.Sprintf("ippkt: IPv6 payload of %d bytes", payloadLen))
	}
	pkt := make([]byte, header.IPv6MinimumSize+payloadLen)
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(payloadLen),
		TransportProtocol: tcpip.TransportProtocolNumber(proto),
		HopLimit:          hopLimit,
		SrcAddr:           tcpipAddr(src),
		DstAddr:           tcpipAddr(dst),
	})
	return pkt
}

// checkPair panics unless src and dst are valid addresses of one family.
func checkPair(src, dst netip.Addr) {
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		panic(fmt.Sprintf("ippkt: cannot build a packet from %v to %v", src, dst))
	}
}

// BuildUDP returns an IPv4 or IPv6 packet (by the addresses' family) that
// carries payload from src to dst in UDP, with valid checksums. It panics if
// src and dst are not valid addresses of one family, or if the packet would
// not fit the IP length fields. Zones are ignored.
func BuildUDP(src, dst netip.AddrPort, payload []byte, hopLimit uint8) []byte {
	s, d := src.Addr().WithZone(""), dst.Addr().WithZone("")
	checkPair(s, d)
	if len(payload) > 0xffff-udpHeaderLen {
		panic(fmt.Sprintf("ippkt: UDP payload of %d bytes", len(payload)))
	}
	pkt := newPacket(s, d, ProtoUDP, hopLimit, udpHeaderLen+len(payload))
	seg := pkt[ipHeaderLen(version(s)):]
	header.UDP(seg).Encode(&header.UDPFields{
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Length:  uint16(len(seg)),
	})
	copy(seg[udpHeaderLen:], payload)
	setSegmentChecksum(ProtoUDP, s, d, seg, 6)
	return pkt
}

// BuildICMPEcho returns an ICMP (IPv4) or ICMPv6 (IPv6) Echo Request, or
// Echo Reply if request is false (RFC 792, RFC 4443 §4), from src to dst
// with identifier id, sequence number seq and payload as its data. It
// panics as BuildUDP does.
func BuildICMPEcho(src, dst netip.Addr, id, seq uint16, payload []byte, hopLimit uint8, request bool) []byte {
	src, dst = src.WithZone(""), dst.WithZone("")
	checkPair(src, dst)
	v := version(src)
	typ, proto := uint8(icmpv6EchoReply), uint8(ProtoICMPv6)
	switch {
	case v == 4 && request:
		typ, proto = icmpv4EchoRequest, ProtoICMP
	case v == 4:
		typ, proto = icmpv4EchoReply, ProtoICMP
	case request:
		typ = icmpv6EchoRequest
	}
	pkt := newPacket(src, dst, proto, hopLimit, icmpHeaderLen+len(payload))
	msg := pkt[ipHeaderLen(v):]
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[4:6], id)
	binary.BigEndian.PutUint16(msg[6:8], seq)
	copy(msg[icmpHeaderLen:], payload)
	setSegmentChecksum(proto, src, dst, msg, 2)
	return pkt
}

// EchoReply answers an ICMP or ICMPv6 Echo Request with the Echo Reply a
// host sends (RFC 792, RFC 1122 §3.2.2.6, RFC 4443 §4.2): from the
// request's destination to its source, with the same identifier, sequence
// number and data, hop limit ICMPHopLimit, and no IP options or extension
// headers. It returns Parse's error for a malformed packet, an error
// wrapping ErrMalformed for an echo request with a bad checksum, and
// ErrNoReply for anything but an unfragmented echo request to a unicast
// address.
func EchoReply(req []byte) ([]byte, error) {
	h, err := Parse(req)
	if err != nil {
		return nil, err
	}
	msg := req[h.HeaderLen:]
	want := uint8(icmpv6EchoRequest)
	if h.Version == 4 {
		want = icmpv4EchoRequest
	}
	if h.Proto != icmpProto(h.Version) || h.Fragment != NotFragment || len(msg) < icmpHeaderLen || msg[0] != want {
		return nil, fmt.Errorf("%w: not an echo request", ErrNoReply)
	}
	if err := checkReplyDest(&h); err != nil {
		return nil, err
	}
	if segmentSum(h.Proto, h.Src, h.Dst, msg) != 0xffff {
		return nil, fmt.Errorf("%w: bad ICMP checksum", ErrMalformed)
	}
	id, seq := binary.BigEndian.Uint16(msg[4:6]), binary.BigEndian.Uint16(msg[6:8])
	return BuildICMPEcho(h.Dst, h.Src, id, seq, msg[icmpHeaderLen:], ICMPHopLimit, false), nil
}

// UDPReply answers a UDP packet with its echo: the same payload, from the
// packet's destination address and port to its source address and port,
// hop limit ICMPHopLimit. It returns Parse's error for a malformed packet,
// an error wrapping ErrMalformed for a UDP header whose Length is not the
// IP payload's or whose checksum is wrong (a zero checksum is accepted over
// IPv4 only, RFC 768 and RFC 8200 §8.1), and ErrNoReply for anything but an
// unfragmented UDP packet to a unicast address.
func UDPReply(pkt []byte) ([]byte, error) {
	h, err := Parse(pkt)
	if err != nil {
		return nil, err
	}
	if h.Proto != ProtoUDP || h.Fragment != NotFragment {
		return nil, fmt.Errorf("%w: not a UDP packet", ErrNoReply)
	}
	if err := checkReplyDest(&h); err != nil {
		return nil, err
	}
	seg := header.UDP(pkt[h.HeaderLen:])
	if len(seg) < udpHeaderLen || int(seg.Length()) != len(seg) {
		return nil, fmt.Errorf("%w: UDP length does not match the IP payload", ErrMalformed)
	}
	if !(h.Version == 4 && seg.Checksum() == 0) && segmentSum(ProtoUDP, h.Src, h.Dst, seg) != 0xffff {
		return nil, fmt.Errorf("%w: bad UDP checksum", ErrMalformed)
	}
	return BuildUDP(
		netip.AddrPortFrom(h.Dst, seg.DestinationPort()),
		netip.AddrPortFrom(h.Src, seg.SourcePort()),
		seg.Payload(), ICMPHopLimit), nil
}

// checkReplyDest refuses to reply from a multicast or broadcast address, or
// to a source that is not a single host.
func checkReplyDest(h *Header) error {
	if !isSingleHost(h.Dst) {
		return fmt.Errorf("%w: destination %v is not a unicast address to reply from", ErrNoReply, h.Dst)
	}
	if !isSingleHost(h.Src) {
		return fmt.Errorf("%w: source %v is not a single host", ErrNoReply, h.Src)
	}
	return nil
}

func icmpProto(version int) uint8 {
	if version == 4 {
		return ProtoICMP
	}
	return ProtoICMPv6
}

func version(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
