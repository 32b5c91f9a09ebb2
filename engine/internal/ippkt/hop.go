package ippkt

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// DecrementHopLimit decrements the IPv4 TTL or IPv6 Hop Limit of pkt in
// place, as a proxy does right before it sends a packet into the tunnel
// (RFC 9484 §7.2), and updates the IPv4 header checksum incrementally.
//
// It returns false, leaving pkt untouched, when the hop limit is 0 or 1:
// the packet must not be forwarded, and the caller answers with
// TimeExceeded (RFC 792, RFC 1812 §5.3.1, RFC 8200 §3 and RFC 4443 §3.3).
// It also returns false for a packet too short to hold an IP header; pkt
// is expected to have passed Parse. It does not allocate. (It is not
// inlined: the IPv4 checksum patch puts it over the inliner's budget.)
func DecrementHopLimit(pkt []byte) bool {
	if len(pkt) == 0 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		return len(pkt) >= 20 && decrementTTL(pkt)
	case 6:
		if len(pkt) < 40 || pkt[7] <= 1 {
			return false
		}
		pkt[7]--
		return true
	}
	return false
}

// decrementTTL decrements the TTL of the IPv4 header at pkt[:20] and
// patches its checksum with RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where
// m is the 16-bit word holding TTL and Protocol. checksum.Combine is the
// one's complement addition. If HC was valid, HC' is the checksum a full
// recomputation gives: the sum is never -0 here since m' is not zero.
func decrementTTL(pkt []byte) bool {
	if pkt[8] <= 1 {
		return false
	}
	old := binary.BigEndian.Uint16(pkt[8:10])
	m := old - 1<<8
	hc := binary.BigEndian.Uint16(pkt[10:12])
	hc = ^checksum.Combine(checksum.Combine(^hc, ^old), m)
	pkt[8]--
	binary.BigEndian.PutUint16(pkt[10:12], hc)
	return true
}

// IsLinkLocal reports whether a is an address whose traffic must stay on
// its link, which a proxy never forwards beyond the tunnel it came in on
// (RFC 9484 §7.2):
//
//   - link-local unicast: 169.254.0.0/16 (RFC 3927), fe80::/10 (RFC 4291);
//   - link-local multicast: 224.0.0.0/24 (RFC 5771); IPv6 multicast of
//     scope 2 (link-local, ff02::/16 and, with flags, ff12::, ff32:: …),
//     and of the narrower scopes 1 (interface-local) and 0 (reserved)
//     (RFC 4291 §2.7);
//   - the IPv4 limited broadcast 255.255.255.255 (RFC 919).
//
// An IPv4-mapped IPv6 address is judged as the IPv4 address it maps. It
// does not allocate.
func IsLinkLocal(a netip.Addr) bool {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return b[0] == 169 && b[1] == 254 ||
			b[0] == 224 && b[1] == 0 && b[2] == 0 ||
			b == [4]byte{255, 255, 255, 255}
	}
	if !a.IsValid() {
		return false
	}
	b := a.As16()
	return b[0] == 0xfe && b[1]&0xc0 == 0x80 || b[0] == 0xff && b[1]&0x0f <= 2
}
