package wire

import (
	"errors"
	"net/netip"

	"github.com/quic-go/quic-go/quicvarint"
)

// Connect-UDP-Bind (draft-ietf-masque-connect-udp-listen; these codepoints
// are those of -10 onward; -08/-09 used 0x11/0x13/0x14 and -07 and earlier
// 0x1C0FE323/0x1C0FE324, with the echoed ASSIGN as the ACK). Capsule
// values, the framing being CapsuleReader's and AppendCapsule's:
//
//	COMPRESSION_ASSIGN {      // 0x11
//	  Context ID (i),
//	  IP Version (8),         // 0: the uncompressed context; 4 or 6
//	  [IP Address (32..128)], // absent for version 0
//	  [UDP Port (16)],        // absent for version 0
//	}
//	COMPRESSION_ACK   { Context ID (i) }   // 0x12
//	COMPRESSION_CLOSE { Context ID (i) }   // 0x13
//
// An HTTP Datagram payload on the uncompressed context (after its Context
// ID) is
//
//	{ IP Version (8), IP Address (32..128), UDP Port (16), UDP Payload (..) }
//
// and on a compressed context only the UDP payload.

// Connect-UDP-Bind capsule types.
const (
	CapsuleCompressionAssign = 0x11
	CapsuleCompressionAck    = 0x12
	CapsuleCompressionClose  = 0x13
)

// ErrMalformedBind: a Connect-UDP-Bind capsule value, or an uncompressed
// datagram, does not parse: a truncated field, an IP version other than
// 0, 4 or 6 (0 only in COMPRESSION_ASSIGN), or bytes after the value. A
// malformed capsule aborts the stream (RFC 9297 §3.3); a malformed
// datagram is dropped.
var ErrMalformedBind = errors.New("wire: malformed Connect-UDP-Bind value")

// CompressionAssign is a COMPRESSION_ASSIGN capsule value. A zero (invalid)
// Addr is the uncompressed context (IP Version 0).
type CompressionAssign struct {
	ContextID uint64
	Addr      netip.AddrPort
}

// Uncompressed reports whether the value assigns the uncompressed context.
func (a CompressionAssign) Uncompressed() bool { return !a.Addr.IsValid() }

// ParseCompressionAssign parses a COMPRESSION_ASSIGN value. IPv4 addresses
// come back as 4-byte addresses, IPv6 ones (IPv4-mapped included) as 16-byte.
func ParseCompressionAssign(b []byte) (CompressionAssign, error) {
	id, n, err := quicvarint.Parse(b)
	if err != nil {
		return CompressionAssign{}, ErrMalformedBind
	}
	b = b[n:]
	if len(b) == 1 && b[0] == 0 {
		return CompressionAssign{ContextID: id}, nil
	}
	addr, rest, err := parseAddrPort(b)
	if err != nil || len(rest) != 0 {
		return CompressionAssign{}, ErrMalformedBind
	}
	return CompressionAssign{ContextID: id, Addr: addr}, nil
}

// AppendCompressionAssign appends a's value to dst.
func AppendCompressionAssign(dst []byte, a CompressionAssign) []byte {
	dst = quicvarint.Append(dst, a.ContextID)
	if a.Uncompressed() {
		return append(dst, 0)
	}
	return AppendAddrPort(dst, a.Addr)
}

// ParseCompressionID parses a COMPRESSION_ACK or COMPRESSION_CLOSE value:
// one Context ID and nothing after it.
func ParseCompressionID(b []byte) (uint64, error) {
	id, n, err := quicvarint.Parse(b)
	if err != nil || n != len(b) {
		return 0, ErrMalformedBind
	}
	return id, nil
}

// AppendCompressionID appends a COMPRESSION_ACK or COMPRESSION_CLOSE value.
func AppendCompressionID(dst []byte, id uint64) []byte { return quicvarint.Append(dst, id) }

// ParseUncompressed splits an uncompressed-context payload (after its
// Context ID) into the peer's address and the UDP payload, which aliases b.
// It does not allocate.
func ParseUncompressed(b []byte) (netip.AddrPort, []byte, error) {
	addr, rest, err := parseAddrPort(b)
	if err != nil {
		return netip.AddrPort{}, nil, ErrMalformedBind
	}
	return addr, rest, nil
}

// AddrPortLen is the encoded length of a's IP Version, IP Address and UDP
// Port: 7 for IPv4, 19 for IPv6.
func AddrPortLen(a netip.AddrPort) int {
	if a.Addr().Is4() {
		return 1 + 4 + 2
	}
	return 1 + 16 + 2
}

// MaxAddrPortLen is the longest AddrPortLen.
const MaxAddrPortLen = 19

// AppendAddrPort appends IP Version, IP Address and UDP Port for a.
func AppendAddrPort(dst []byte, a netip.AddrPort) []byte {
	ip := a.Addr()
	if ip.Is4() {
		v := ip.As4()
		dst = append(dst, 4)
		dst = append(dst, v[:]...)
	} else {
		v := ip.As16()
		dst = append(dst, 6)
		dst = append(dst, v[:]...)
	}
	return append(dst, byte(a.Port()>>8), byte(a.Port()))
}

// PutAddrPort writes AppendAddrPort's encoding of a into b, which must be
// AddrPortLen(a) long; it does not allocate.
func PutAddrPort(b []byte, a netip.AddrPort) {
	ip := a.Addr()
	if ip.Is4() {
		v := ip.As4()
		b[0] = 4
		copy(b[1:5], v[:])
		b[5], b[6] = byte(a.Port()>>8), byte(a.Port())
		return
	}
	v := ip.As16()
	b[0] = 6
	copy(b[1:17], v[:])
	b[17], b[18] = byte(a.Port()>>8), byte(a.Port())
}

func parseAddrPort(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) == 0 {
		return netip.AddrPort{}, nil, ErrMalformedBind
	}
	var ip netip.Addr
	switch b[0] {
	case 4:
		if len(b) < 1+4+2 {
			return netip.AddrPort{}, nil, ErrMalformedBind
		}
		ip = netip.AddrFrom4([4]byte(b[1:5]))
		b = b[5:]
	case 6:
		if len(b) < 1+16+2 {
			return netip.AddrPort{}, nil, ErrMalformedBind
		}
		ip = netip.AddrFrom16([16]byte(b[1:17]))
		b = b[17:]
	default:
		return netip.AddrPort{}, nil, ErrMalformedBind
	}
	port := uint16(b[0])<<8 | uint16(b[1])
	return netip.AddrPortFrom(ip, port), b[2:], nil
}
