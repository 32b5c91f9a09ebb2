// Package policy decides which targets a MASQUE proxy may open tunnels to,
// so that clients cannot use the proxy to reach its own host, its private
// networks or its cloud metadata service (server-side request forgery).
//
// A Policy checks one resolved address and port. The caller checks the
// address it is about to connect to — after DNS resolution, never the name
// — and connects to exactly that address (see
// engine/internal/template.Resolve). A refusal is a *Refusal whose Reason
// a proxy reports (403 with Proxy-Status).
//
// The default refuses the ranges that are never a legitimate public
// target (listed in builtin.go): unspecified and "this network", loopback,
// the RFC 1918 and unique-local private ranges, shared address space
// (CGNAT), link-local (cloud metadata at 169.254.169.254 included),
// site-local, multicast, broadcast, reserved, IETF protocol assignments,
// benchmarking (198.18.0.0/15, 2001:2::/48), and IPv6 forms that reach IPv4
// hosts: IPv4-mapped addresses are checked as the IPv4 address they map,
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses by the IPv4 address
// they embed, and deprecated IPv4-compatible (::/96), Teredo (2001::/32)
// and local-use NAT64 (64:ff9b:1::/48) addresses are refused outright.
// Port 0 is always refused. Config opens exact exceptions and adds
// refusals; Policy's doc gives the order rules are applied in.
package policy
