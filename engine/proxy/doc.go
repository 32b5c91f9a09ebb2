// Package proxy is masqroute's MASQUE proxy: it serves CONNECT-UDP (RFC
// 9298) and CONNECT-IP (RFC 9484) tunnels over HTTP/3, and an embedder's own
// session kinds beside them.
//
// Every QUIC connection the proxy serves gets one [engine.Router], which owns
// all of the connection's HTTP Datagrams; each tunnel is a session of that
// router, started by the [engine.Kind] its :protocol selects. Files:
//
//   - proxy.go, conn.go: the Proxy, its configuration, and one connection
//     (its datagram reader and its router).
//   - masque.go, status.go: request handling (extended CONNECT, the URI
//     templates, capsules) and the answers to refused requests.
//   - connectudp.go: the CONNECT-UDP kind and tunnel.
//   - connecttcp.go: CONNECT for TCP (RFC 9114 §4.4), outside the router.
//   - udpbind.go: Connect-UDP-Bind, a bound socket per CONNECT-UDP tunnel
//     that asked for one (draft-ietf-masque-connect-udp-listen).
//   - connectip*.go: the CONNECT-IP kind, its device reader, its tunnels and
//     their scope (address arithmetic in engine/internal/ipaddr).
//   - proxystats.go: the proxy's counters and Stats.
//
// Imports point one way: proxy → engine → shardmap, ringbuf.
package proxy
