package packetio

import (
	"net/netip"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
)

// Packet builders and a header reader for tools and tests that speak
// CONNECT-IP from the client side (masqroute client -ip, say). They are thin
// wrappers over the proxy's own packet code.

// BuildICMPEcho returns an IPv4 ICMP or IPv6 ICMPv6 echo request (request
// true) or reply from src to dst, with valid checksums.
func BuildICMPEcho(src, dst netip.Addr, id, seq uint16, payload []byte, hopLimit uint8, request bool) []byte {
	return ippkt.BuildICMPEcho(src, dst, id, seq, payload, hopLimit, request)
}

// BuildUDP returns an IPv4 or IPv6 UDP packet with valid checksums.
func BuildUDP(src, dst netip.AddrPort, payload []byte, hopLimit uint8) []byte {
	return ippkt.BuildUDP(src, dst, payload, hopLimit)
}

// Header is what ParseHeader reads of an IP packet.
type Header struct {
	Version  int
	Src, Dst netip.Addr
	Proto    uint8 // upper-layer protocol (IPv6 extension headers walked)
	HopLimit uint8 // IPv4 TTL or IPv6 Hop Limit
	// Payload is the upper-layer header and data, aliasing the packet.
	Payload []byte
}

// ParseHeader checks pkt's IP header the way the proxy does and returns it.
func ParseHeader(pkt []byte) (Header, error) {
	h, err := ippkt.Parse(pkt)
	if err != nil {
		return Header{}, err
	}
	return Header{Version: h.Version, Src: h.Src, Dst: h.Dst, Proto: h.Proto, HopLimit: h.HopLimit,
		Payload: pkt[h.HeaderLen:]}, nil
}
