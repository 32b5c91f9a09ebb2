package proxy

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/packetio"
)

// hostNetDevice is a Device that leads into the host, as a TUN interface
// does: the userspace network, without its IsolatedDevice method.
type hostNetDevice struct{ packetio.Device }

// Through a Device that leads into the host, CONNECT-IP refuses the host's
// own addresses (injected: TEST-NET addresses of the userspace network,
// which carries the packets that pass); -allow spares one address at a
// time; an address the host takes after a tunnel started is refused per
// packet. On an isolated Device the host's addresses mean nothing.
func TestConnectIPRefusesHostAddrs(t *testing.T) {
	addr := netip.MustParseAddr
	var host atomic.Pointer[[]netip.Addr]
	host.Store(&[]netip.Addr{addr("192.0.2.5"), addr("192.0.2.6")})
	newIPProxy := func(hostNet bool) *Proxy {
		ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
		require.NoError(t, err)
		var dev packetio.Device = ns
		if hostNet {
			dev = hostNetDevice{ns}
		}
		p, err := New(Config{Logger: discardLogger(), IdleTimeout: -1,
			HostAddrs: func() ([]netip.Addr, error) { return *host.Load(), nil },
			IP: &IPConfig{Device: dev, Reachable: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
				Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.6/32")}}})
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		return p
	}
	ctx := context.Background()

	p := newIPProxy(true)
	_, err := p.parseIPScope(ctx, "192.0.2.5", "*", p.ip.reachable())
	se, ok := err.(*StatusError)
	require.True(t, ok, "%v", err)
	require.Equal(t, 403, se.Status, "a host address")
	_, err = p.parseIPScope(ctx, "192.0.2.6", "*", p.ip.reachable())
	require.NoError(t, err, "a host address -allow names")
	out := &countingSender{}
	tun, _ := ipTestTunnelOn(t, p, "*", out, false)
	require.False(t, tun.scope.Allows(addr("192.0.2.5"), 17, false), "cut out of the advertised scope")
	require.True(t, tun.scope.Allows(addr("192.0.2.6"), 17, false))
	require.True(t, tun.scope.Allows(addr("192.0.2.4"), 17, false))

	send := func(dst string) {
		pkt := ippkt.BuildUDP(netip.AddrPortFrom(tun.addr4, 5555), netip.MustParseAddrPort(dst), []byte("x"), 64)
		tun.HandleDatagrams([][]byte{append([]byte{0}, pkt...)}) // context ID 0
	}
	send("192.0.2.1:7")
	require.Equal(t, uint64(1), tun.c.toTarget.Load())
	// The host takes 192.0.2.1 (an interface change): the tunnel's scope
	// still holds it, the per-packet check does not let it through.
	host.Store(&[]netip.Addr{addr("192.0.2.1"), addr("192.0.2.5"), addr("192.0.2.6")})
	require.NoError(t, p.RefreshHostAddrs())
	send("192.0.2.1:7")
	require.Equal(t, uint64(1), tun.c.toTarget.Load(), "nothing more reached the network")
	require.Equal(t, uint64(1), tun.c.dropScope.Load())
	require.True(t, p.ip.refusesHost(addr("::ffff:192.0.2.1")), "IPv4-mapped")
	send("192.0.2.6:7")
	require.Equal(t, uint64(2), tun.c.toTarget.Load(), "-allow spares it")
	// The host lets 192.0.2.1 go again.
	host.Store(&[]netip.Addr{addr("192.0.2.5")})
	require.NoError(t, p.RefreshHostAddrs())
	send("192.0.2.1:7")
	require.Equal(t, uint64(3), tun.c.toTarget.Load())

	p = newIPProxy(false) // the userspace network: a world of its own
	sc, err := p.parseIPScope(ctx, "192.0.2.5", "*", p.ip.reachable())
	require.NoError(t, err)
	require.True(t, sc.Allows(addr("192.0.2.5"), 17, false))
	require.False(t, p.ip.refusesHost(addr("192.0.2.5")))
}

// The per-packet check allocates nothing, on a host address or another.
func TestRefusesHostDoesNotAllocate(t *testing.T) {
	ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
	require.NoError(t, err)
	p, err := New(Config{Logger: discardLogger(),
		HostAddrs: func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8::9")}, nil
		},
		IP: &IPConfig{Device: hostNetDevice{ns}}})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	own, other := netip.MustParseAddr("2001:db8::9"), netip.MustParseAddr("2001:db8::8")
	allocs := testing.AllocsPerRun(1000, func() {
		if !p.ip.refusesHost(own) || p.ip.refusesHost(other) {
			t.Fatal("wrong answer")
		}
	})
	require.Zero(t, allocs)
}
