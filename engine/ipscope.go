package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// ErrBadScope: a CONNECT-IP request's target or ipproto is malformed. The
// proxy answers 400.
var ErrBadScope = errors.New("masqroute: bad CONNECT-IP scope")

// ipScope is what a CONNECT-IP tunnel may reach: address ranges (sorted, non
// overlapping, IPv4 before IPv6) and one IP protocol (0: all). It is the
// request's scope (RFC 9484 §4.6) cut down to the networks the proxy serves,
// and it is exactly what the proxy advertises in ROUTE_ADVERTISEMENT.
type ipScope struct {
	ranges []addrRange
	proto  uint8
}

type addrRange struct{ start, end netip.Addr }

// routes is the ROUTE_ADVERTISEMENT of the scope.
func (sc *ipScope) routes() []wire.IPRoute {
	rs := make([]wire.IPRoute, len(sc.ranges))
	for i, r := range sc.ranges {
		rs[i] = wire.IPRoute{Start: r.start, End: r.end, Protocol: sc.proto}
	}
	return rs
}

// allows reports whether a packet to dst with upper-layer protocol proto is
// in scope. ICMP is always allowed (RFC 9484 §4.7.3), and so are IPv6
// fragments after the first, whose upper-layer protocol is unknown.
func (sc *ipScope) allows(dst netip.Addr, proto uint8, icmpOrFragment bool) bool {
	if sc.proto != 0 && proto != sc.proto && !icmpOrFragment {
		return false
	}
	for _, r := range sc.ranges {
		if r.start.Compare(dst) <= 0 && dst.Compare(r.end) <= 0 {
			return true
		}
	}
	return false
}

// parseIPScope turns the template variables target and ipproto (RFC 9484
// §4.6; empty or "*" means everything) into a scope, resolving a host name
// target, and intersects it with reachable.
func (p *Proxy) parseIPScope(ctx context.Context, target, ipproto string, reachable []netip.Prefix) (*ipScope, error) {
	sc := &ipScope{}
	switch ipproto {
	case "", "*":
	default:
		n, err := strconv.ParseUint(ipproto, 10, 8)
		if err != nil || (len(ipproto) > 1 && ipproto[0] == '0') {
			return nil, fmt.Errorf("%w: ipproto %q", ErrBadScope, ipproto)
		}
		sc.proto = uint8(n)
	}
	var want []netip.Prefix
	switch {
	case target == "" || target == "*":
		want = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	case strings.Contains(target, "/"):
		pfx, err := netip.ParsePrefix(target)
		if err != nil || pfx.Addr().Zone() != "" {
			return nil, fmt.Errorf("%w: target %q", ErrBadScope, target)
		}
		want = []netip.Prefix{pfx.Masked()}
	default:
		if a, err := netip.ParseAddr(target); err == nil {
			if a.Zone() != "" {
				return nil, fmt.Errorf("%w: target %q", ErrBadScope, target)
			}
			a = a.Unmap()
			want = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
			break
		}
		t, err := template.ParseHostPort(target, "1")
		if err != nil || t.Name == "" {
			return nil, fmt.Errorf("%w: target %q", ErrBadScope, target)
		}
		addrs, err := p.cfg.Resolver.LookupNetIP(ctx, "ip", t.Name)
		if err != nil || len(addrs) == 0 {
			p.counters.tunnelFailDNS.Add(1)
			return nil, &StatusError{Status: 502, ProxyError: proxyErrDNSError, Details: "DNS lookup failed", Err: err}
		}
		for _, a := range addrs {
			a = a.Unmap().WithZone("")
			want = append(want, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	for _, w := range want {
		for _, r := range reachable {
			if x, ok := intersect(w, r); ok {
				sc.ranges = append(sc.ranges, addrRange{x.Addr(), lastAddr(x)})
			}
		}
	}
	sc.ranges = mergeRanges(sc.ranges)
	if len(sc.ranges) == 0 {
		p.counters.tunnelRefusedPolicy.Add(1)
		return nil, &StatusError{Status: 403, ProxyError: proxyErrDestIPProhibited,
			Details: "target outside the networks this proxy serves"}
	}
	return sc, nil
}

// intersect returns the smaller of two prefixes if one contains the other.
func intersect(a, b netip.Prefix) (netip.Prefix, bool) {
	if a.Addr().Is4() != b.Addr().Is4() || !a.Overlaps(b) {
		return netip.Prefix{}, false
	}
	if a.Bits() >= b.Bits() {
		return a, true
	}
	return b, true
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// mergeRanges sorts ranges (IPv4 first) and merges overlapping or adjacent
// ones, so the result can be advertised as RFC 9484 §4.7.3 requires.
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(x, y addrRange) int { return x.start.Compare(y.start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].end.Is4() == r.start.Is4() {
			last := &out[n-1]
			if next := last.end.Next(); r.start.Compare(last.end) <= 0 || (next.IsValid() && next == r.start) {
				if r.end.Compare(last.end) > 0 {
					last.end = r.end
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
