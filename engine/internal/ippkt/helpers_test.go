package ippkt

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Test packets are built by hand here, byte by byte, so that the tests do
// not rely on the code under test to make their inputs.

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("198.51.100.7")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8:ffff::7")
	// proxy addresses that answer with ICMP errors
	from4 = netip.MustParseAddr("192.0.2.254")
	from6 = netip.MustParseAddr("2001:db8::fe")
)

// refSum is RFC 1071's one's complement sum, done the slow obvious way.
func refSum(chunks ...[]byte) uint16 {
	var sum uint64
	for _, b := range chunks {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint64(b[i])<<8 | uint64(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint64(b[len(b)-1]) << 8
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// refPseudo is the pseudo-header of RFC 768 / RFC 8200 §8.1 (every chunk
// here has an even length, so refSum may sum it piecewise).
func refPseudo(src, dst netip.Addr, proto uint8, length int) []byte {
	b := append(src.AsSlice(), dst.AsSlice()...)
	return append(b, 0, proto, byte(length>>8), byte(length))
}

// v4opts describes an IPv4 packet for v4pkt.
type v4opts struct {
	src, dst   netip.Addr
	ttl, proto uint8
	options    []byte // length a multiple of 4
	flagsFrag  uint16 // flags (3 bits) and fragment offset (13 bits)
	payload    []byte
}

// v4pkt builds an IPv4 packet with a valid header checksum.
func v4pkt(o v4opts) []byte {
	if !o.src.IsValid() {
		o.src, o.dst = src4, dst4
	}
	if o.ttl == 0 {
		o.ttl = 64
	}
	ihl := 20 + len(o.options)
	b := make([]byte, ihl+len(o.payload))
	b[0] = 4<<4 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], o.flagsFrag)
	b[8], b[9] = o.ttl, o.proto
	s, d := o.src.As4(), o.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], o.options)
	copy(b[ihl:], o.payload)
	fixV4Checksum(b)
	return b
}

func fixV4Checksum(b []byte) {
	ihl := int(b[0]&0xf) * 4
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^refSum(b[:ihl]))
}

const (
	flagDF = 0x4000
	flagMF = 0x2000
)

// ext is an IPv6 extension header for v6pkt; v6pkt fills in its Next
// Header byte.
type ext struct {
	proto uint8
	data  []byte
}

// optsHdr is a Hop-by-Hop, Routing or Destination Options header of
// (units+1)*8 bytes.
func optsHdr(proto uint8, units int) ext {
	b := make([]byte, (units+1)*8)
	b[1] = byte(units)
	return ext{proto, b}
}

// fragHdr is a Fragment header; offset is in 8-byte units.
func fragHdr(offset uint16, more bool) ext {
	b := make([]byte, 8)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], 0xdeadbeef)
	return ext{ProtoFragment, b}
}

// ahHdr is an Authentication Header of (words+2)*4 bytes.
func ahHdr(words int) ext {
	b := make([]byte, (words+2)*4)
	b[1] = byte(words)
	return ext{ProtoAH, b}
}

// v6opts describes an IPv6 packet for v6pkt.
type v6opts struct {
	src, dst netip.Addr
	hop      uint8
	exts     []ext
	proto    uint8 // after the last extension header
	payload  []byte
}

func v6pkt(o v6opts) []byte {
	if !o.src.IsValid() {
		o.src, o.dst = src6, dst6
	}
	if o.hop == 0 {
		o.hop = 64
	}
	b := make([]byte, 40)
	b[0] = 6 << 4
	s, d := o.src.As16(), o.dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	b[7] = o.hop
	next := 6 // index of the Next Header byte to fill
	for _, e := range o.exts {
		b[next] = e.proto
		next = len(b)
		b = append(b, e.data...)
	}
	b[next] = o.proto
	b = append(b, o.payload...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// udpSeg is a UDP header and payload with a zero checksum.
func udpSeg(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

// icmpMsg is an ICMP message of type typ and code with body after the
// 4-byte checksum word; its checksum is not set.
func icmpMsg(typ, code uint8, body ...byte) []byte {
	return append([]byte{typ, code, 0, 0}, body...)
}

// withICMPChecksum sets the checksum of the ICMP message in pkt (IPv4 or
// IPv6 without extension headers).
func withICMPChecksum(pkt []byte) []byte {
	if pkt[0]>>4 == 4 {
		ihl := int(pkt[0]&0xf) * 4
		msg := pkt[ihl:]
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[2:], ^refSum(msg))
		return pkt
	}
	msg := pkt[40:]
	s, _ := netip.AddrFromSlice(pkt[8:24])
	d, _ := netip.AddrFromSlice(pkt[24:40])
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:], ^refSum(refPseudo(s, d, ProtoICMPv6, len(msg)), msg))
	return pkt
}

func repeat(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// requireBytes is require.Equal for byte slices that may be 64 KiB long:
// on a mismatch it reports where, instead of diffing two dumps, which
// takes minutes at that size and stalls the fuzzer.
func requireBytes(t testing.TB, want, got []byte, msg string) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at %d", msg, len(got), len(want), i)
}
