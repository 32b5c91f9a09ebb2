package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// A target that answers with ICMP port unreachable: the proxy counts the
// reports and the tunnel stays up (RFC 9298 has no way to tell the client).
func TestTargetUnreachable(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	// A port nobody listens on: bind one, note it, close it.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	closed := pc.LocalAddr().String()
	pc.Close()

	u := dialUDP(t, env.dial(t), closed)
	for range 20 {
		_, err := u.Write([]byte("anyone?"))
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "ICMP reports counted", func() bool { return env.proxy.Stats().TargetUnreachable > 0 })
	require.Equal(t, int64(1), env.proxy.Stats().Tunnels, "the tunnel stays up")
	st := env.proxy.Stats()
	t.Logf("%d written to the target, %d ICMP reports, %d send errors", st.ToTarget, st.TargetUnreachable, st.DropSendError)
}

// Shutdown with one tunnel pending (its DNS lookup hangs) and one active:
// the pending one is cancelled at once, the active one cut at the deadline,
// and nothing is left running (goleak).
func TestShutdownWithPendingAndActiveTunnels(t *testing.T) {
	resolver := &fakeResolver{slow: "slow.test"}
	env := startProxy(t, proxy.Config{Resolver: resolver, ResolveTimeout: time.Minute})
	c := env.dial(t)
	active := dialUDP(t, c, env.echo.Addr().String())
	echoOnce(t, active, []byte("x"))

	pendingErr := make(chan error, 1)
	go func() {
		_, err := c.DialUDP(context.Background(), "slow.test:53")
		pendingErr <- err
	}()
	waitFor(t, "pending tunnel", func() bool { return env.proxy.Stats().Router.Pending == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := env.proxy.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case err := <-pendingErr:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("pending tunnel still waiting after shutdown")
	}
	st := env.proxy.Stats()
	require.Zero(t, st.Conns)
	require.Zero(t, st.Tunnels)
	require.Zero(t, st.Router.Pending)
	require.Zero(t, st.Router.Active)
	require.Equal(t, uint64(1), st.Router.Cancelled, "the pending tunnel")
}

// MaxConns closes connections beyond the limit with H3_EXCESSIVE_LOAD and
// counts them.
func TestMaxConns(t *testing.T) {
	env := startProxy(t, proxy.Config{MaxConns: 2})
	env.dial(t)
	env.dial(t)
	// The proxy admits a connection when it serves it, after the client's
	// handshake has completed: wait until it has both.
	require.Eventually(t, func() bool { return env.proxy.Stats().Conns == 2 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c3, err := client.Dial(ctx, env.addr, &client.Config{TLSConfig: loopbackCert(t).ClientTLS()})
	if err == nil {
		defer c3.Close()
		_, err = c3.DialUDP(ctx, env.echo.Addr().String())
	}
	var appErr *quic.ApplicationError
	require.True(t, errors.As(err, &appErr), "third connection: %v", err)
	require.Equal(t, quic.ApplicationErrorCode(0x107), appErr.ErrorCode, "H3_EXCESSIVE_LOAD")
	require.Equal(t, uint64(1), env.proxy.Stats().ConnsRejected)
}

// Datagrams that arrive while a tunnel is still being set up are held up to
// the pending buffer, delivered once it is up, and the rest counted.
func TestPendingBufferLimit(t *testing.T) {
	gate := make(chan struct{})
	resolver := &gatedResolver{gate: gate, addr: netip.MustParseAddr("127.0.0.1")}
	env := startProxy(t, proxy.Config{Resolver: resolver, PendingBuffer: 5})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	respCh := make(chan int, 1)
	go func() {
		// A name, so that the init waits for the gated resolver.
		resp := c.connect(t, str, "echo.test:"+portOf(env.echo.Addr().String()))
		respCh <- resp.StatusCode
	}()
	waitFor(t, "pending tunnel", func() bool { return env.proxy.Stats().Router.Pending == 1 })
	for i := range 8 {
		c.send(t, str.StreamID(), []byte{byte(i)})
	}
	waitFor(t, "overflow counted", func() bool { return env.proxy.Stats().Router.DroppedPendingOverflow == 3 })
	close(gate)
	require.Equal(t, 200, <-respCh)
	for i := range 5 {
		_, payload := c.recv(t)
		require.Equal(t, []byte{byte(i)}, payload, "held datagrams arrive in order")
	}
}

type gatedResolver struct {
	gate chan struct{}
	addr netip.Addr
}

func (r *gatedResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	select {
	case <-r.gate:
		return []netip.Addr{r.addr}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SSRF: a name that resolves to a refused address and an allowed one is
// connected to the allowed one, the one the policy checked; and the name is
// resolved once, so a rebinding answer later changes nothing.
func TestResolvedAddressIsCheckedAndUsed(t *testing.T) {
	pol, err := policy.New(policy.Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	require.NoError(t, err)
	r := &rebindingResolver{answers: [][]netip.Addr{
		{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("127.0.0.1")}, // private first, then allowed
		{netip.MustParseAddr("169.254.169.254")},                            // what a rebinding attack answers next
	}}
	env := startProxy(t, proxy.Config{Policy: pol, Resolver: r})
	u := dialUDP(t, env.dial(t), "rebind.test:"+portOf(env.echo.Addr().String()))
	for range 3 {
		echoOnce(t, u, []byte("x"))
	}
	require.Equal(t, 1, r.calls, "the name is resolved once per tunnel")
	require.Equal(t, uint64(3), env.echo.Received.Load(), "the echo on the checked address got the datagrams")
}

type rebindingResolver struct {
	answers [][]netip.Addr
	calls   int
}

func (r *rebindingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	a := r.answers[min(r.calls, len(r.answers)-1)]
	r.calls++
	return a, nil
}
