// Package quiclb spreads one QUIC service over several sockets of a host and
// over several hosts behind a load balancer, by putting the route into the
// server's connection IDs.
//
// The pieces, in the order a packet meets them:
//
//   - An external load balancer (AWS NLB's QUIC listener, or any QUIC-LB
//     plaintext router) reads the 8-byte server ID in octets 1–8 of the
//     destination connection ID and sends the packet to that host.
//   - The host's kernel hands the datagram to one of the UDP sockets bound
//     to the address with SO_REUSEPORT. A classic BPF program (Program,
//     attached with Attach) reads the server ID and the transport octet 9
//     and returns that transport's socket slot; a packet it cannot route
//     (an Initial or 0-RTT packet with the client's random connection ID,
//     another server's ID) gets an out-of-range index, and the kernel falls
//     back to its 4-tuple hash.
//   - Each socket belongs to one quic.Transport whose Generator made the
//     connection IDs with that transport octet, so the packet finds its
//     connection however the client's address changed.
//
// Keys (keys.go) make the hosts interchangeable where they must be (Retry
// and NEW_TOKEN tokens, TLS session tickets) and distinct where they must
// be (stateless-reset tokens, one key per server ID).
//
// The connection ID layout (cid.go) follows draft-ietf-quic-load-balancers
// plaintext mode with an 8-byte server ID, the format AWS NLB's QuicServerId
// names. Nothing here encrypts the server ID.
package quiclb
