package proxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/ipaddr"
)

type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, ErrBadScope
}

func TestParseIPScope(t *testing.T) {
	p, err := New(Config{Resolver: mapResolver{"host.test": {netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}}, Logger: discardLogger()})
	require.NoError(t, err)
	reach := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}
	ctx := context.Background()

	sc, err := p.parseIPScope(ctx, "*", "*", reach)
	require.NoError(t, err)
	require.Equal(t, []ipaddr.Range{
		{Start: netip.MustParseAddr("192.0.2.0"), End: netip.MustParseAddr("192.0.2.255")},
		{Start: netip.MustParseAddr("2001:db8::"), End: netip.MustParseAddr("2001:db8::ffff:ffff:ffff:ffff")},
	}, sc.Ranges)
	require.Zero(t, sc.Proto)
	require.True(t, sc.Allows(netip.MustParseAddr("192.0.2.9"), 17, false))
	require.False(t, sc.Allows(netip.MustParseAddr("198.51.100.1"), 17, false))

	sc, err = p.parseIPScope(ctx, "192.0.2.0/28", "17", reach)
	require.NoError(t, err)
	require.Equal(t, uint8(17), sc.Proto)
	require.True(t, sc.Allows(netip.MustParseAddr("192.0.2.15"), 17, false))
	require.False(t, sc.Allows(netip.MustParseAddr("192.0.2.16"), 17, false))
	require.False(t, sc.Allows(netip.MustParseAddr("192.0.2.1"), 6, false), "TCP outside ipproto")
	require.True(t, sc.Allows(netip.MustParseAddr("192.0.2.1"), 1, true), "ICMP always allowed")

	sc, err = p.parseIPScope(ctx, "host.test", "", reach)
	require.NoError(t, err)
	require.Len(t, sc.Ranges, 2)
	require.Equal(t, sc.Ranges[0].Start, sc.Ranges[0].End)

	for _, bad := range [][2]string{{"192.0.2.0/33", "*"}, {"not_a_host!", "*"}, {"*", "256"}, {"*", "-1"}, {"*", "017"}, {"fe80::1%eth0", "*"}} {
		_, err := p.parseIPScope(ctx, bad[0], bad[1], reach)
		require.ErrorIs(t, err, ErrBadScope, "%q %q", bad[0], bad[1])
	}
	_, err = p.parseIPScope(ctx, "198.51.100.0/24", "*", reach)
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 403, se.Status)
	_, err = p.parseIPScope(ctx, "nxdomain.test", "*", reach)
	require.ErrorAs(t, err, &se)
	require.Equal(t, 502, se.Status)
}

// blockingResolver answers nothing until its context ends.
type blockingResolver struct{}

func (blockingResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A scope's host name is looked up within ResolveTimeout, and a lookup that
// runs past it is answered 502 dns_timeout, not left to the init timeout.
func TestParseIPScopeResolveTimeout(t *testing.T) {
	p, err := New(Config{Resolver: blockingResolver{}, ResolveTimeout: 20 * time.Millisecond, Logger: discardLogger()})
	require.NoError(t, err)
	reach := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = p.parseIPScope(ctx, "slow.test", "*", reach)
	require.Less(t, time.Since(start), 5*time.Second)
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 502, se.Status)
	require.Equal(t, proxyErrDNSTimeout, se.ProxyError)
	require.Equal(t, uint64(1), p.Stats().FailedDNS)
}
