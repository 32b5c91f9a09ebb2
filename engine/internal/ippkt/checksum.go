package ippkt

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Upper-layer checksums (RFC 1071 sums, computed by gvisor's checksum
// package): ICMPv4 covers the message only (RFC 792); UDP (RFC 768) and
// ICMPv6 (RFC 4443 §2.3) also cover the pseudo-header of RFC 8200 §8.1 or
// its IPv4 counterpart. The checksum field lies at seg[2:4] for ICMP and at
// seg[6:8] for UDP.

// segmentSum returns the one's complement sum of seg, which starts with an
// upper-layer header of protocol proto, and of its pseudo-header if the
// protocol's checksum has one. A segment whose checksum field is right sums
// to 0xffff.
func segmentSum(proto uint8, src, dst netip.Addr, seg []byte) uint16 {
	var xsum uint16
	if proto != ProtoICMP {
		xsum = header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), tcpipAddr(src), tcpipAddr(dst), uint16(len(seg)))
	}
	return checksum.Checksum(seg, xsum)
}

// setSegmentChecksum fills the checksum field of seg, at seg[off:off+2].
func setSegmentChecksum(proto uint8, src, dst netip.Addr, seg []byte, off int) {
	seg[off], seg[off+1] = 0, 0
	xsum := ^segmentSum(proto, src, dst, seg)
	if xsum == 0 && proto == ProtoUDP {
		// 0 means "no checksum" in UDP; send its one's complement twin.
		xsum = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], xsum)
}

func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}
