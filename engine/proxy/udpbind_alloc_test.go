package proxy

import (
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/policy"
)

// newTestBindTunnel builds a bound tunnel outside any proxy connection,
// with loopback peers allowed, replies going to a countingSender.
func newTestBindTunnel(t testing.TB) (*bindTunnel, *countingSender) {
	pol, err := policy.New(policy.Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	require.NoError(t, err)
	p, err := New(Config{Logger: discardLogger(), IdleTimeout: -1, Policy: pol})
	require.NoError(t, err)
	snd := &countingSender{}
	r := engine.NewRouter(engine.Options{Sender: snd, Logger: discardLogger()})
	t.Cleanup(func() { r.Close() })
	s, err := r.Register(0, nil)
	require.NoError(t, err)
	out := newSender(snd, &p.counters)
	t.Cleanup(out.close)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	req := &Request{datagrams: true, w: httptest.NewRecorder(), ended: make(chan struct{})}
	tun := newBindTunnel(p, s, req, conn, out)
	t.Cleanup(func() { tun.Close(engine.ErrUnregistered) })
	return tun, snd
}

// Both directions of a bound tunnel allocate nothing per datagram in
// steady state: the client's datagrams on the uncompressed context (address
// parsed, policy and limits checked, WriteTo) and the peer's answers (ReadFrom
// into pooled buffers, the address written in front, the reply ring, the
// sender).
func TestBindTunnelDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	tun, snd := newTestBindTunnel(t)
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { es.Close() })
	tun.connRate = newRateLimits(DefaultRateConnDatagrams, DefaultRateConnBytes, DefaultRateBurst)
	require.NoError(t, tun.assign(wire.CompressionAssign{ContextID: 2}))

	batch := make([][]byte, 8)
	for i := range batch {
		d := wire.AppendAddrPort([]byte{2}, es.Addr()) // context 2, uncompressed
		batch[i] = append(d, make([]byte, 1200)...)
	}
	require.Zero(t, echoAllocs(t, tun.HandleDatagrams, batch, snd), "allocations per batch of 8 datagrams, both directions")
	require.Equal(t, uint64(202*8), tun.c.toTarget.Load())
}

// A proxy listening on a wildcard address binds tunnels to the address it
// reaches the client from, so that Proxy-Public-Address is a real one.
func TestBindLocalAddr(t *testing.T) {
	client := netip.MustParseAddrPort("127.0.0.1:5000")
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), bindLocalAddr(netip.IPv4Unspecified(), client))
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), bindLocalAddr(netip.IPv6Unspecified(), client))
	require.Equal(t, netip.MustParseAddr("127.0.0.2"), bindLocalAddr(netip.MustParseAddr("::ffff:127.0.0.2"), client))
}
