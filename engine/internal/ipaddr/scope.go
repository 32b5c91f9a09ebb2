package ipaddr

import (
	"net/netip"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A Scope is what a CONNECT-IP tunnel may reach: address ranges (sorted, non
// overlapping, IPv4 before IPv6, as Merge leaves them) and one IP protocol
// (0: all). The proxy builds it from the request's scope (RFC 9484 §4.6) cut
// down to the networks it serves, and it is exactly what the proxy
// advertises in ROUTE_ADVERTISEMENT.
type Scope struct {
	Ranges []Range
	Proto  uint8
}

// Routes is the ROUTE_ADVERTISEMENT of the scope.
func (sc *Scope) Routes() []wire.IPRoute {
	rs := make([]wire.IPRoute, len(sc.Ranges))
	for i, r := range sc.Ranges {
		rs[i] = wire.IPRoute{Start: r.Start, End: r.End, Protocol: sc.Proto}
	}
	return rs
}

// Allows reports whether a packet to dst with upper-layer protocol proto is
// in scope. ICMP is always allowed (RFC 9484 §4.7.3), and so are IPv6
// fragments after the first, whose upper-layer protocol is unknown.
func (sc *Scope) Allows(dst netip.Addr, proto uint8, icmpOrFragment bool) bool {
	if sc.Proto != 0 && proto != sc.Proto && !icmpOrFragment {
		return false
	}
	for _, r := range sc.Ranges {
		if r.Start.Compare(dst) <= 0 && dst.Compare(r.End) <= 0 {
			return true
		}
	}
	return false
}
