package template

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Resolver looks names up. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Resolve turns t into the address the tunnel connects to. pick is the
// caller's policy: Resolve returns the first address it accepts, so the
// address that was checked is the address that is used. A nil pick accepts
// every address.
//
// An IP literal is its own address, IPv4-mapped IPv6 unmapped
// ("::ffff:1.2.3.4" gives 1.2.3.4), and no lookup happens. A name is
// looked up with r for both address families, bounded by timeout (none if
// timeout <= 0) and by ctx; the addresses are unmapped and stripped of
// zones before pick sees them, and tried in the resolver's order.
//
// Errors: ErrDNSTimeout when the lookup ran past timeout (or the
// resolver reported a timeout), ErrDNS for every other lookup failure and
// for an empty answer (both wrap the resolver's error, so a cancelled ctx
// is also errors.Is(err, context.Canceled)), ErrNoAllowedAddress when pick
// refused every address. To answer 403 with the reason of the first
// refusal, let pick record it.
func Resolve(ctx context.Context, r Resolver, t Target, timeout time.Duration, pick func(netip.Addr) bool) (netip.AddrPort, error) {
	if t.Addr.IsValid() {
		a := t.Addr.Unmap().WithZone("")
		if pick != nil && !pick(a) {
			return netip.AddrPort{}, fmt.Errorf("%w: %s", ErrNoAllowedAddress, a)
		}
		return netip.AddrPortFrom(a, t.Port), nil
	}
	addrs, err := Lookup(ctx, r, t.Name, timeout)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for _, a := range addrs {
		if pick == nil || pick(a) {
			return netip.AddrPortFrom(a, t.Port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("%w: %s (%d addresses)", ErrNoAllowedAddress, t.Name, len(addrs))
}

// Lookup looks name up with r for both address families, bounded by timeout
// (none if timeout <= 0) and by ctx, and returns the valid addresses,
// unmapped and stripped of zones, in the resolver's order. Its errors are
// Resolve's: ErrDNSTimeout when the lookup ran past timeout (or the resolver
// reported a timeout), ErrDNS for any other failure and for an empty
// answer.
func Lookup(ctx context.Context, r Resolver, name string, timeout time.Duration) ([]netip.Addr, error) {
	lctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	addrs, err := r.LookupNetIP(lctx, "ip", name)
	if err != nil {
		if isTimeout(err) || (ctx.Err() == nil && lctx.Err() != nil) {
			return nil, fmt.Errorf("%w: %s: %w", ErrDNSTimeout, name, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrDNS, name, err)
	}
	valid := addrs[:0:0]
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); a.IsValid() {
			valid = append(valid, a)
		}
	}
	if len(valid) == 0 {
		return nil, fmt.Errorf("%w: %s: no addresses", ErrDNS, name)
	}
	return valid, nil
}

// isTimeout reports whether a resolver error says it timed out: a
// *net.DNSError with IsTimeout, or any error with a true Timeout method.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
