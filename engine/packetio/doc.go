// Package packetio carries whole IP packets between a CONNECT-IP proxy
// (RFC 9484) and the network behind it.
//
// A Device is that network as the proxy sees it: WritePackets sends the
// IPv4 and IPv6 packets clients put in their HTTP Datagrams into it, and
// ReadPackets returns the packets coming back, which the proxy routes to a
// tunnel by destination address. Packets carry no link-layer header and
// always come out as ordinary, separate IP packets; nothing is guaranteed to
// arrive, and every bounded queue drops, and counts, on overflow.
//
// There are three backends:
//
//   - Netstack, a gVisor userspace network (wireguard-go's tun/netstack)
//     that needs no privileges and is what tests use by default. It holds one
//     host, by default at 192.0.2.1 (TEST-NET-1, RFC 5737) and 2001:db8::1
//     (the IPv6 documentation prefix, RFC 3849), which answers ICMP and
//     ICMPv6 echo requests and echoes UDP on port 7. The host's default
//     routes point back through the device, so replies reach any client
//     address the proxy assigns (198.18.0.0/15, fd00::/64, ...) with no
//     per-pool configuration. Packets for other addresses are dropped
//     silently; UDP to a closed port on the host gets ICMP port unreachable.
//     Net exposes the userspace network for tests that dial or listen in it.
//   - TUN, a Linux TUN interface (wireguard-go's tun.CreateTUN) for real
//     deployments. Kernel offloads stay on for reads, where wireguard-go
//     splits coalesced super-packets; writes are never coalesced. See TUN.
//   - Responder, an in-process host for unit tests that builds echo replies
//     (ICMP, ICMPv6, UDP on any port) for its own addresses itself and
//     counts and drops everything else. It starts no goroutines.
//
// Every Device allows one reader goroutine, any number of writers and a
// concurrent Close, which unblocks the reader with net.ErrClosed and stops
// the goroutines the device started.
package packetio
