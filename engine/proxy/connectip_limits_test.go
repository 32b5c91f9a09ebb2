package proxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/packetio"
)

// -deny takes networks out of CONNECT-IP's reachable set, -allow adds to
// the default one: the same flags as for CONNECT-UDP's targets.
func TestConnectIPAllowDeny(t *testing.T) {
	newIPProxy := func(ip IPConfig) *Proxy {
		ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
		require.NoError(t, err)
		ip.Device = ns
		p, err := New(Config{IP: &ip, Logger: discardLogger()})
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		return p
	}
	ctx := context.Background()
	pfx := netip.MustParsePrefix

	p := newIPProxy(IPConfig{Reachable: []netip.Prefix{pfx("192.0.2.0/24")}, Deny: []netip.Prefix{pfx("192.0.2.128/25")}})
	sc, err := p.parseIPScope(ctx, "*", "*", p.ip.reach)
	require.NoError(t, err)
	require.True(t, sc.Allows(netip.MustParseAddr("192.0.2.1"), 17, false))
	require.False(t, sc.Allows(netip.MustParseAddr("192.0.2.200"), 17, false), "denied")
	_, err = p.parseIPScope(ctx, "192.0.2.200", "*", p.ip.reach)
	se, ok := err.(*StatusError)
	require.True(t, ok, "%v", err)
	require.Equal(t, 403, se.Status)

	p = newIPProxy(IPConfig{}) // the default: no private networks
	_, err = p.parseIPScope(ctx, "10.9.1.1", "*", p.ip.reach)
	require.Error(t, err)
	p = newIPProxy(IPConfig{Allow: []netip.Prefix{pfx("10.9.0.0/16")}, Deny: []netip.Prefix{pfx("8.8.8.0/24")}})
	_, err = p.parseIPScope(ctx, "10.9.1.1", "*", p.ip.reach)
	require.NoError(t, err, "allowed")
	sc, err = p.parseIPScope(ctx, "*", "*", p.ip.reach)
	require.NoError(t, err)
	require.False(t, sc.Allows(netip.MustParseAddr("8.8.8.8"), 17, false), "denied")
	require.True(t, sc.Allows(netip.MustParseAddr("8.8.4.4"), 17, false))
}

// CONNECT-IP packets go under the tunnel's rate limit and the
// connection's amplification budget like CONNECT-UDP datagrams.
func TestConnectIPRateAndAmplification(t *testing.T) {
	out := &countingSender{}
	_, tun, _, _ := ipTestTunnel(t, out, false)
	pkt := func() []byte {
		ip := ippkt.BuildUDP(netip.AddrPortFrom(tun.addr4, 5555), netip.MustParseAddrPort("192.0.2.1:9"), make([]byte, 100), 64)
		return append([]byte{0}, ip...) // context ID 0
	}
	batch := func(n int) [][]byte {
		b := make([][]byte, n)
		for i := range b {
			b[i] = pkt()
		}
		return b
	}
	tun.rate = newRateLimits(100, 0, 100*time.Millisecond) // 10 deep
	tun.HandleDatagrams(batch(30))
	require.EqualValues(t, 10, tun.c.toTarget.Load())
	require.EqualValues(t, 20, tun.c.dropRateLimited.Load())

	tun.rate = nil
	tun.amp = newAmpBudget(3, 5*128, func() uint64 { return 0 }) // five 128-byte packets, the client sent nothing
	tun.HandleDatagrams(batch(8))
	require.EqualValues(t, 15, tun.c.toTarget.Load())
	require.EqualValues(t, 3, tun.c.dropAmplification.Load())
}

// The idle check ends a CONNECT-IP tunnel only when no packet went either
// way since the last check.
func TestConnectIPIdleCheck(t *testing.T) {
	p, tun, _, _ := ipTestTunnel(t, &countingSender{}, false)
	p.cfg.IdleTimeout = time.Hour
	tun.idle = time.AfterFunc(time.Hour, func() {})
	t.Cleanup(func() { tun.idle.Stop() })
	tun.c.toTarget.Add(1)
	tun.checkIdle()
	tun.c.toClient.Add(1)
	tun.checkIdle()
	require.Zero(t, p.counters.tunnelIdleClosed.Load(), "packets since the last check")
	tun.checkIdle()
	require.EqualValues(t, 1, p.counters.tunnelIdleClosed.Load(), "none since")
}
