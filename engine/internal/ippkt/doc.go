// Package ippkt inspects the IP packets a CONNECT-IP proxy (RFC 9484)
// forwards and builds the ICMP errors it answers with.
//
// Per packet, on the forwarding path, nothing allocates (allocation
// counts are asserted in the tests):
//
//   - Parse checks the IPv4 or IPv6 header, strictly (see its doc), and
//     returns a Header: addresses, the upper-layer protocol found by
//     walking IPv6 extension headers (RFC 9484 §4.8), the hop limit,
//     lengths and fragment kind.
//   - DecrementHopLimit decrements TTL / Hop Limit in place before a packet
//     enters the tunnel (RFC 9484 §7.2), with an RFC 1624 incremental IPv4
//     checksum update; false means "answer TimeExceeded".
//   - IsLinkLocal tells addresses whose traffic is never forwarded.
//
// Off that path, when a packet is dropped, the builders return a complete
// IP packet to send back to its source (RFC 9484 §7.2.1): TimeExceeded,
// PacketTooBig, DestinationUnreachable. They refuse with ErrNoICMP to
// answer what must not be answered (ICMP errors, later fragments, packets
// from or to multicast, …); the caller then drops silently. They quote as
// much of the original as fits in 576 bytes (IPv4) or 1280 bytes (IPv6).
//
// For tests and an in-process responder: BuildUDP, BuildICMPEcho,
// EchoReply and UDPReply.
//
// Headers are read and written with gvisor's tcpip/header and sums computed
// by its tcpip/checksum; the checks and the walk are this package's.
package ippkt
