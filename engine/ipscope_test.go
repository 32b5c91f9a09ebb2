package engine

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, ErrBadScope
}

func TestParseIPScope(t *testing.T) {
	p, err := NewProxy(ProxyConfig{Resolver: mapResolver{"host.test": {netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}}, Logger: discardLogger()})
	require.NoError(t, err)
	reach := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}
	ctx := context.Background()

	sc, err := p.parseIPScope(ctx, "*", "*", reach)
	require.NoError(t, err)
	require.Equal(t, []addrRange{
		{netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("192.0.2.255")},
		{netip.MustParseAddr("2001:db8::"), netip.MustParseAddr("2001:db8::ffff:ffff:ffff:ffff")},
	}, sc.ranges)
	require.Zero(t, sc.proto)
	require.True(t, sc.allows(netip.MustParseAddr("192.0.2.9"), 17, false))
	require.False(t, sc.allows(netip.MustParseAddr("198.51.100.1"), 17, false))

	sc, err = p.parseIPScope(ctx, "192.0.2.0/28", "17", reach)
	require.NoError(t, err)
	require.Equal(t, uint8(17), sc.proto)
	require.True(t, sc.allows(netip.MustParseAddr("192.0.2.15"), 17, false))
	require.False(t, sc.allows(netip.MustParseAddr("192.0.2.16"), 17, false))
	require.False(t, sc.allows(netip.MustParseAddr("192.0.2.1"), 6, false), "TCP outside ipproto")
	require.True(t, sc.allows(netip.MustParseAddr("192.0.2.1"), 1, true), "ICMP always allowed")

	sc, err = p.parseIPScope(ctx, "host.test", "", reach)
	require.NoError(t, err)
	require.Len(t, sc.ranges, 2)
	require.Equal(t, sc.ranges[0].start, sc.ranges[0].end)

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

func TestMergeRanges(t *testing.T) {
	a := netip.MustParseAddr
	got := mergeRanges([]addrRange{{a("10.0.0.5"), a("10.0.0.9")}, {a("10.0.0.0"), a("10.0.0.4")}, {a("10.0.0.8"), a("10.0.1.0")}, {a("::1"), a("::2")}})
	require.Equal(t, []addrRange{{a("10.0.0.0"), a("10.0.1.0")}, {a("::1"), a("::2")}}, got)
}
