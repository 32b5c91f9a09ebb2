package ippkt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Internet Protocol Numbers this package looks at (IANA "Assigned Internet
// Protocol Numbers"). Hop-by-Hop, Routing, Fragment, AH and Destination
// Options are the IPv6 extension headers Parse walks (RFC 8200 §4); ESP and
// No Next Header end the walk.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDestOpts = 60
)

// MaxExtHeaders bounds the IPv6 extension headers Parse walks. RFC 8200 §4.1
// allows each extension header once, Destination Options twice: six in all.
// Two more leave room for a second AH (nested IPsec) or Routing header;
// a longer chain is refused as malformed.
const MaxExtHeaders = 8

// ErrMalformed: Parse refused the packet. The error returned wraps it with
// the rule that was broken; it is preallocated, so refusing a packet does
// not allocate either. A proxy drops such a packet silently: RFC 9484 §7.2
// makes it a forwarding error, not a protocol violation, and there is no
// trustworthy header to address an ICMP error to.
var ErrMalformed = errors.New("ippkt: malformed packet")

var (
	errShort        = fmt.Errorf("%w: shorter than an IP header", ErrMalformed)
	errVersion      = fmt.Errorf("%w: IP version not 4 or 6", ErrMalformed)
	errIHL          = fmt.Errorf("%w: IPv4 header length below 20 or beyond the packet", ErrMalformed)
	errTotalShort   = fmt.Errorf("%w: IPv4 total length below the header length", ErrMalformed)
	errTruncated    = fmt.Errorf("%w: length field beyond the end of the packet", ErrMalformed)
	errTrailing     = fmt.Errorf("%w: bytes after the length the header gives", ErrMalformed)
	errChecksum     = fmt.Errorf("%w: bad IPv4 header checksum", ErrMalformed)
	errExtTruncated = fmt.Errorf("%w: IPv6 extension header beyond the payload", ErrMalformed)
	errExtTooMany   = fmt.Errorf("%w: more than %d IPv6 extension headers", ErrMalformed, MaxExtHeaders)
	errHopByHop     = fmt.Errorf("%w: Hop-by-Hop Options header not first", ErrMalformed)
	errFragTwice    = fmt.Errorf("%w: two IPv6 Fragment headers", ErrMalformed)
)

// Fragment says whether a packet is a fragment, and which.
type Fragment uint8

const (
	// NotFragment: a whole packet. An IPv6 atomic fragment (Fragment header
	// with offset 0 and M clear, RFC 6946) is a whole packet too.
	NotFragment Fragment = iota
	// FirstFragment: offset 0, more to come; it carries the upper-layer
	// header (RFC 7112 for IPv6).
	FirstFragment
	// LaterFragment: a non-zero offset; there is no upper-layer header, and
	// no ICMP error is ever sent about it (RFC 1812 §4.3.2.7, RFC 4443 §2.4).
	LaterFragment
)

func (f Fragment) String() string {
	switch f {
	case NotFragment:
		return "not-fragment"
	case FirstFragment:
		return "first-fragment"
	case LaterFragment:
		return "later-fragment"
	}
	return fmt.Sprintf("Fragment(%d)", uint8(f))
}

// Header is what a proxy needs of an IP packet's headers.
type Header struct {
	// Version is 4 or 6.
	Version int
	// Src and Dst are of the packet's family (Is4 for IPv4, Is6 for IPv6,
	// an IPv4-mapped IPv6 address stays IPv6), without zone.
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol: the IPv4 Protocol field, or the
	// Next Header that ends the IPv6 extension header walk (RFC 9484 §4.8).
	// That is ProtoESP or ProtoNoNext when the walk stops there, and for a
	// LaterFragment it is the Fragment header's Next Header: the protocol
	// the fragment belongs to, though its header is in the first fragment.
	Proto uint8
	// HopLimit is the IPv4 TTL or the IPv6 Hop Limit.
	HopLimit uint8
	// HeaderLen is where the upper-layer header starts: the IPv4 IHL in
	// bytes (options included), or 40 plus the extension headers walked.
	// For a LaterFragment it is where the fragment's data starts.
	HeaderLen int
	// TotalLen is the packet's length by its header, which Parse requires
	// to be len(pkt).
	TotalLen int
	// Fragment says whether the packet is a fragment.
	Fragment Fragment
}

// Parse checks the IP header of pkt and returns what a proxy needs of it.
// It does not allocate, and it reads only pkt's headers.
//
// Parse is strict where leniency would let garbage through: an HTTP
// Datagram carries exactly one IP packet (RFC 9484 §6), so the length the
// header gives (IPv4 Total Length, 40 + IPv6 Payload Length) must be
// len(pkt), neither more (truncated) nor less (trailing bytes). It refuses,
// with an error wrapping ErrMalformed:
//
//   - a packet shorter than 20 (IPv4) or 40 (IPv6) bytes, or of a version
//     other than 4 or 6;
//   - IPv4: IHL below 5 or beyond the packet, Total Length below the
//     header, or a bad header checksum (RFC 1812 §5.2.2, which a router
//     verifies);
//   - IPv6: an IPv6 Payload Length of zero with a payload, which is a
//     jumbogram (RFC 2675): it cannot fit a QUIC DATAGRAM frame;
//   - IPv6: an extension header that does not fit in the payload, a
//     Hop-by-Hop Options header anywhere but first (RFC 8200 §4.1), a
//     second Fragment header, or more than MaxExtHeaders headers.
//
// IPv4 options are not checked: they are the destination's business. IPv6
// extension headers are walked, not validated: the Routing header's type
// and the options are not looked at. Besides the five RFC 8200 §4 headers
// the walk knows, Mobility (135), HIP (139), Shim6 (140) and the
// experimental 253 and 254 are reported as Proto, not walked.
func Parse(pkt []byte) (Header, error) {
	if len(pkt) == 0 {
		return Header{}, errShort
	}
	switch pkt[0] >> 4 {
	case 4:
		return parse4(pkt)
	case 6:
		return parse6(pkt)
	}
	return Header{}, errVersion
}

func parse4(pkt []byte) (Header, error) {
	if len(pkt) < header.IPv4MinimumSize {
		return Header{}, errShort
	}
	ip := header.IPv4(pkt)
	ihl := int(ip.HeaderLength())
	if ihl < header.IPv4MinimumSize || ihl > len(pkt) {
		return Header{}, errIHL
	}
	switch total := int(ip.TotalLength()); {
	case total < ihl:
		return Header{}, errTotalShort
	case total > len(pkt):
		return Header{}, errTruncated
	case total < len(pkt):
		return Header{}, errTrailing
	}
	if !ip.IsChecksumValid() {
		return Header{}, errChecksum
	}
	h := Header{
		Version:   4,
		Src:       netip.AddrFrom4([4]byte(pkt[12:16])),
		Dst:       netip.AddrFrom4([4]byte(pkt[16:20])),
		Proto:     ip.Protocol(),
		HopLimit:  ip.TTL(),
		HeaderLen: ihl,
		TotalLen:  len(pkt),
	}
	switch {
	case ip.FragmentOffset() != 0:
		h.Fragment = LaterFragment
	case ip.More():
		h.Fragment = FirstFragment
	}
	return h, nil
}

func parse6(pkt []byte) (Header, error) {
	if len(pkt) < header.IPv6MinimumSize {
		return Header{}, errShort
	}
	ip := header.IPv6(pkt)
	switch total := header.IPv6MinimumSize + int(ip.PayloadLength()); {
	case total > len(pkt):
		return Header{}, errTruncated
	case total < len(pkt):
		// Also a jumbogram, whose Payload Length is 0.
		return Header{}, errTrailing
	}
	h := Header{
		Version:  6,
		Src:      netip.AddrFrom16([16]byte(pkt[8:24])),
		Dst:      netip.AddrFrom16([16]byte(pkt[24:40])),
		HopLimit: ip.HopLimit(),
		TotalLen: len(pkt),
	}
	var err error
	h.Proto, h.HeaderLen, h.Fragment, err = walkExtHeaders(pkt, ip.NextHeader())
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

// walkExtHeaders follows the IPv6 extension header chain that starts after
// the fixed header with next, and returns the upper-layer protocol and where
// its header starts (RFC 9484 §4.8, RFC 8200 §4).
//
// Every extension header walked starts with Next Header and is at least 8
// bytes long; the length is the second byte in units of 8 bytes not counting
// the first 8 (Hop-by-Hop, Routing, Destination Options, RFC 8200 §4.3–4.6),
// in units of 4 bytes minus 2 (AH, RFC 4302 §2.2), or fixed at 8 (Fragment,
// RFC 8200 §4.5). At most MaxExtHeaders are walked.
func walkExtHeaders(pkt []byte, next uint8) (proto uint8, off int, frag Fragment, err error) {
	off = header.IPv6MinimumSize
	sawFrag := false
	for n := 0; ; n++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoAH, ProtoDestOpts:
		default:
			// An upper-layer protocol, ESP or No Next Header.
			return next, off, frag, nil
		}
		if n == MaxExtHeaders {
			return 0, 0, 0, errExtTooMany
		}
		if len(pkt)-off < 8 {
			return 0, 0, 0, errExtTruncated
		}
		var size int
		switch next {
		case ProtoHopByHop:
			if n != 0 {
				return 0, 0, 0, errHopByHop
			}
			size = (int(pkt[off+1]) + 1) * 8
		case ProtoFragment:
			if sawFrag {
				return 0, 0, 0, errFragTwice
			}
			sawFrag = true
			size = 8
			offMF := binary.BigEndian.Uint16(pkt[off+2 : off+4])
			switch {
			case offMF>>3 != 0:
				// The fragmentable part, and any header in it, is in
				// the first fragment only.
				return pkt[off], off + size, LaterFragment, nil
			case offMF&1 != 0:
				frag = FirstFragment
			}
		case ProtoAH:
			size = (int(pkt[off+1]) + 2) * 4
		default:
			size = (int(pkt[off+1]) + 1) * 8
		}
		if len(pkt)-off < size {
			return 0, 0, 0, errExtTruncated
		}
		next = pkt[off]
		off += size
	}
}
