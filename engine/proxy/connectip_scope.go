package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/engine/internal/template"
)

// ErrBadScope: a CONNECT-IP request's target or ipproto is malformed. The
// proxy answers 400.
var ErrBadScope = errors.New("masqroute: bad CONNECT-IP scope")

// parseIPScope turns the template variables target and ipproto (RFC 9484
// §4.6; empty or "*" means everything) into a scope, resolving a host name
// target (bounded by Config.ResolveTimeout), and intersects it with
// reachable.
func (p *Proxy) parseIPScope(ctx context.Context, target, ipproto string, reachable []netip.Prefix) (*ipaddr.Scope, error) {
	sc := &ipaddr.Scope{}
	switch ipproto {
	case "", "*":
	default:
		n, err := strconv.ParseUint(ipproto, 10, 8)
		if err != nil || (len(ipproto) > 1 && ipproto[0] == '0') {
			return nil, fmt.Errorf("%w: ipproto %q", ErrBadScope, ipproto)
		}
		sc.Proto = uint8(n)
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
		addrs, err := template.Lookup(ctx, p.cfg.Resolver, t.Name, p.cfg.ResolveTimeout)
		if err != nil {
			return nil, p.dnsRefusal(err)
		}
		for _, a := range addrs {
			want = append(want, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	for _, w := range want {
		for _, r := range reachable {
			if x, ok := ipaddr.Intersect(w, r); ok {
				sc.Ranges = append(sc.Ranges, ipaddr.PrefixRange(x))
			}
		}
	}
	sc.Ranges = ipaddr.Merge(sc.Ranges)
	if len(sc.Ranges) == 0 {
		p.counters.tunnelRefusedPolicy.Add(1)
		return nil, &StatusError{Status: 403, ProxyError: proxyErrDestIPProhibited,
			Details: "target outside the networks this proxy serves"}
	}
	return sc, nil
}
