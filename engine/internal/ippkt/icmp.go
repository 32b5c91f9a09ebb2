package ippkt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ErrNoICMP: the packet must not be answered with an ICMP error, and the
// caller drops it silently. The returned error wraps it with the rule that
// applies. The rules are RFC 1812 §4.3.2.7 (and RFC 1122 §3.2.2) for IPv4
// and RFC 4443 §2.4(e) for IPv6: no ICMP error about
//
//   - an ICMP error: ICMPv4 types 3, 4, 5, 11, 12 and ICMPv6 types below
//     128, or an ICMPv6 Redirect (137); nor about an ICMP packet too short
//     to tell its type;
//   - a LaterFragment;
//   - a packet whose source is not one host: unspecified, loopback,
//     multicast, for IPv4 0.0.0.0/8 and 240.0.0.0/4 (which holds the
//     limited broadcast), for IPv6 an IPv4-mapped address;
//   - a packet to a multicast address, or to 255.255.255.255; except that
//     an ICMPv6 Packet Too Big answers IPv6 multicast too (RFC 4443
//     §2.4(e.3)), so that path MTU discovery works for it;
//   - for PacketTooBig, an IPv4 packet without DF: a router fragments it
//     rather than answer (RFC 791, RFC 1191).
var ErrNoICMP = errors.New("ippkt: no ICMP error for this packet")

var (
	errNoICMPForICMPError = fmt.Errorf("%w: it is an ICMP error", ErrNoICMP)
	errNoICMPShortICMP    = fmt.Errorf("%w: ICMP message too short to tell its type", ErrNoICMP)
	errNoICMPFragment     = fmt.Errorf("%w: non-first fragment", ErrNoICMP)
	errNoICMPSource       = fmt.Errorf("%w: source is not a single host", ErrNoICMP)
	errNoICMPDest         = fmt.Errorf("%w: destination is multicast or broadcast", ErrNoICMP)
	errNoICMPNoDF         = fmt.Errorf("%w: IPv4 packet without DF can be fragmented", ErrNoICMP)
)

// Size bounds of an ICMP error: it quotes as much of the original packet as
// fits in 576 bytes for IPv4 (RFC 1812 §4.3.2.3) and in the IPv6 minimum
// MTU, 1280 bytes, for IPv6 (RFC 4443 §2.4(c)).
const (
	MaxICMPv4ErrorLen = 576
	MaxICMPv6ErrorLen = 1280
)

// ICMPHopLimit is the TTL / Hop Limit of the packets this package builds
// in reply: the Linux default, and the IANA recommended initial TTL.
const ICMPHopLimit = 64

// Reason says why a packet is not forwarded, and picks the Destination
// Unreachable code (see DestinationUnreachable).
type Reason uint8

const (
	// AdminProhibited: policy forbids the destination.
	AdminProhibited Reason = iota + 1
	// SourcePolicy: the source address is not one the sender may use
	// (not in its assigned prefixes; RFC 9484 §11, BCP 38).
	SourcePolicy
	// NoRoute: no route to the destination.
	NoRoute
	// AddressUnreachable: a route exists, but the destination host does not
	// answer (the last hop cannot reach it).
	AddressUnreachable
)

func (r Reason) String() string {
	switch r {
	case AdminProhibited:
		return "admin-prohibited"
	case SourcePolicy:
		return "source-policy"
	case NoRoute:
		return "no-route"
	case AddressUnreachable:
		return "address-unreachable"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// ICMP types and codes sent (RFC 792, RFC 1812 §5.2.7.1, RFC 4443 §3).
const (
	icmpv4DestUnreachable = 3
	icmpv4TimeExceeded    = 11
	icmpv6DestUnreachable = 1
	icmpv6PacketTooBig    = 2
	icmpv6TimeExceeded    = 3

	icmpv4CodeNetUnreachable  = 0
	icmpv4CodeHostUnreachable = 1
	icmpv4CodeFragNeeded      = 4
	icmpv4CodeAdminProhibited = 13

	icmpv6CodeNoRoute            = 0
	icmpv6CodeAdminProhibited    = 1
	icmpv6CodeAddressUnreachable = 3
	icmpv6CodeSourcePolicy       = 5
)

// unreachCodes maps a Reason to its ICMPv4 and ICMPv6 Destination
// Unreachable codes; DestinationUnreachable documents the choice.
var unreachCodes = [...]struct{ v4, v6 uint8 }{
	AdminProhibited:    {icmpv4CodeAdminProhibited, icmpv6CodeAdminProhibited},
	SourcePolicy:       {icmpv4CodeAdminProhibited, icmpv6CodeSourcePolicy},
	NoRoute:            {icmpv4CodeNetUnreachable, icmpv6CodeNoRoute},
	AddressUnreachable: {icmpv4CodeHostUnreachable, icmpv6CodeAddressUnreachable},
}

// TimeExceeded returns the ICMP Time Exceeded message (ICMPv4 type 11 code
// 0, RFC 792; ICMPv6 type 3 code 0, RFC 4443 §3.3) that answers orig, a
// packet dropped because DecrementHopLimit returned false.
//
// Like every builder here, it returns a complete IP packet, checksums
// included, from `from` (the proxy's address on the tunnel, or the router
// address it poses as) to orig's source, with hop limit ICMPHopLimit,
// quoting orig up to MaxICMPv4ErrorLen or MaxICMPv6ErrorLen. It returns
// Parse's error for a malformed orig, an error wrapping ErrNoICMP when orig
// must not be answered, and another error when from is not a unicast
// address of orig's family. The caller rate-limits what it sends (RFC 1812
// §4.3.2.8, RFC 4443 §2.4(f)).
func TimeExceeded(orig []byte, from netip.Addr) ([]byte, error) {
	return icmpError(orig, from, icmpKind{icmpv4TimeExceeded, 0, icmpv6TimeExceeded, 0}, 0)
}

// PacketTooBig returns the ICMP message that tells orig's sender that orig
// does not fit the next link's MTU (RFC 9484 §10.1): for IPv6, Packet Too
// Big (type 2 code 0, RFC 4443 §3.2) with mtu; for IPv4, Destination
// Unreachable code 4, "fragmentation needed and DF set", with mtu as the
// Next-Hop MTU (RFC 792, RFC 1191 §4). An IPv4 packet without DF gets
// ErrNoICMP: it may be fragmented instead, which this package does not do;
// the caller drops it (or fragments it). Unlike the other errors, an IPv6
// packet to a multicast address is answered (RFC 4443 §2.4(e.3)).
//
// mtu must be in [68, 65535] for IPv4 (RFC 791; the field has 16 bits) and
// at least 1280 for IPv6 (RFC 8200 §5); otherwise it returns an error. See
// TimeExceeded for the rest.
func PacketTooBig(orig []byte, from netip.Addr, mtu int) ([]byte, error) {
	return icmpError(orig, from, icmpKind{icmpv4DestUnreachable, icmpv4CodeFragNeeded, icmpv6PacketTooBig, 0}, mtu)
}

// DestinationUnreachable returns the ICMP Destination Unreachable message
// that answers orig, which is not forwarded for reason. RFC 9484 §7.2.1
// leaves the code to the proxy and suggests the ICMPv6 ones; the mapping:
//
//	Reason              ICMPv6 type 1 (RFC 4443 §3.1)     ICMPv4 type 3 (RFC 792, RFC 1812 §5.2.7.1)
//	AdminProhibited     1 admin. prohibited               13 communication administratively prohibited
//	SourcePolicy        5 source address failed policy    13 (IPv4 has no source-policy code)
//	NoRoute             0 no route to destination         0 net unreachable (RFC 1812 §4.3.3.1: no route at all)
//	AddressUnreachable  3 address unreachable             1 host unreachable (last hop cannot reach the host)
//
// RFC 9484 §7.2.1 suggests code 5 for invalid source addresses and code 0
// or 1 for unroutable destinations. It returns an error for an unknown
// reason; see TimeExceeded for the rest.
func DestinationUnreachable(orig []byte, from netip.Addr, reason Reason) ([]byte, error) {
	if reason == 0 || int(reason) >= len(unreachCodes) {
		return nil, fmt.Errorf("ippkt: unknown reason %v", reason)
	}
	c := unreachCodes[reason]
	return icmpError(orig, from, icmpKind{icmpv4DestUnreachable, c.v4, icmpv6DestUnreachable, c.v6}, 0)
}

// icmpKind is the type and code of an ICMP error, by family.
type icmpKind struct{ typ4, code4, typ6, code6 uint8 }

// ptb reports whether k is a Packet Too Big, or its IPv4 counterpart.
func (k icmpKind) ptb() bool {
	return k.typ6 == icmpv6PacketTooBig
}

// icmpError builds the ICMP error of kind k about orig. mtu is the MTU of
// a Packet Too Big: a 32-bit field at bytes 4–7 in ICMPv6, the low 16 bits
// in ICMPv4 (RFC 1191 §4); bytes 4–7 are 0 in the other messages.
func icmpError(orig []byte, from netip.Addr, k icmpKind, mtu int) ([]byte, error) {
	h, err := Parse(orig)
	if err != nil {
		return nil, err
	}
	from, err = replySource(&h, from)
	if err != nil {
		return nil, err
	}
	typ, code, maxLen, proto := k.typ6, k.code6, MaxICMPv6ErrorLen, uint8(ProtoICMPv6)
	if h.Version == 4 {
		typ, code, maxLen, proto = k.typ4, k.code4, MaxICMPv4ErrorLen, ProtoICMP
	}
	if k.ptb() {
		switch {
		case h.Version == 4 && (mtu < 68 || mtu > 0xffff):
			return nil, fmt.Errorf("ippkt: IPv4 next-hop MTU %d outside [68, 65535]", mtu)
		case h.Version == 6 && (mtu < header.IPv6MinimumMTU || uint64(mtu) > 0xffffffff):
			return nil, fmt.Errorf("ippkt: IPv6 MTU %d outside [1280, 2^32-1]", mtu)
		case h.Version == 4 && header.IPv4(orig).Flags()&header.IPv4FlagDontFragment == 0:
			return nil, errNoICMPNoDF
		}
	}
	if err := mayAnswer(orig, &h, k.ptb()); err != nil {
		return nil, err
	}
	hl := ipHeaderLen(h.Version)
	quote := orig[:min(len(orig), maxLen-hl-icmpHeaderLen)]
	pkt := newPacket(from, h.Src, proto, ICMPHopLimit, icmpHeaderLen+len(quote))
	msg := pkt[hl:]
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint32(msg[4:8], uint32(mtu))
	copy(msg[icmpHeaderLen:], quote)
	setSegmentChecksum(proto, from, h.Src, msg, 2)
	return pkt, nil
}

// mayAnswer applies the rules of ErrNoICMP to a parsed packet.
func mayAnswer(pkt []byte, h *Header, toMulticast6 bool) error {
	if h.Fragment == LaterFragment {
		return errNoICMPFragment
	}
	if !isSingleHost(h.Src) {
		return errNoICMPSource
	}
	if isMulticast(h.Dst) && !(toMulticast6 && h.Version == 6) || h.Dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return errNoICMPDest
	}
	switch {
	case h.Version == 4 && h.Proto == ProtoICMP:
		if h.HeaderLen == h.TotalLen {
			return errNoICMPShortICMP
		}
		switch pkt[h.HeaderLen] {
		case 3, 4, 5, 11, 12:
			return errNoICMPForICMPError
		}
	case h.Version == 6 && h.Proto == ProtoICMPv6:
		if h.HeaderLen == h.TotalLen {
			return errNoICMPShortICMP
		}
		if t := pkt[h.HeaderLen]; t < 128 || t == 137 {
			return errNoICMPForICMPError
		}
	}
	return nil
}

// isSingleHost reports whether a source address names one host (RFC 1812
// §4.3.2.7, RFC 4443 §2.4(e.6)): not unspecified, loopback, multicast,
// IPv4 0.0.0.0/8 or 240.0.0.0/4, nor an IPv4-mapped IPv6 address, which
// never appears on the wire (RFC 4291 §2.5.5.2). It judges a by its bytes:
// unlike netip's methods, it does not unmap.
func isSingleHost(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && b[0] != 127 && b[0] < 224
	}
	return a.IsValid() && !isMulticast(a) && !a.Is4In6() &&
		a != netip.IPv6Unspecified() && a != netip.IPv6Loopback()
}

// isMulticast reports whether a is in 224.0.0.0/4 or ff00::/8; an
// IPv4-mapped address is not unmapped.
func isMulticast(a netip.Addr) bool {
	if a.Is4() {
		return a.As4()[0]>>4 == 0xe
	}
	return a.Is6() && a.As16()[0] == 0xff
}

// replySource checks that from can be the source of a reply to h.
func replySource(h *Header, from netip.Addr) (netip.Addr, error) {
	from = from.WithZone("")
	if h.Version == 4 {
		from = from.Unmap()
	}
	if !from.IsValid() || from.Is4() != (h.Version == 4) || from.Is4In6() || !isSingleHost(from) {
		return netip.Addr{}, fmt.Errorf("ippkt: %v cannot be the source of an ICMP error to an IPv%d packet", from, h.Version)
	}
	return from, nil
}
