package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// startProxyTransport serves p on an explicit quic.Transport on loopback,
// configured by ConfigureTransport, as the daemon does. It returns the
// address.
func startProxyTransport(t *testing.T, cfg proxy.Config) (*proxy.Proxy, string) {
	t.Helper()
	cfg.Policy = loopbackPolicy(t)
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := proxy.New(cfg)
	require.NoError(t, err)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	p.ConfigureTransport(tr)
	tlsConf := p.TLSConfig(loopbackCert(t).ServerTLS())
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := tr.Listen(tlsConf, p.QUICConfig(&quic.Config{MaxIdleTimeout: 5 * time.Second}))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		ln.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		tr.Close()
		udp.Close()
	})
	return p, udp.LocalAddr().String()
}

func dialQUIC(t *testing.T, addr string) (*quic.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
	if err == nil {
		t.Cleanup(func() { qc.CloseWithError(0, "") })
	}
	return qc, err
}

// Concurrent connections from one address (all of these come from
// 127.0.0.1) are refused before the handshake completes once at the
// limit; a closed one makes room again.
func TestAddrConcurrentLimit(t *testing.T) {
	p, addr := startProxyTransport(t, proxy.Config{MaxConnsPerAddr: 2, NewConnsPerAddr: 1000})
	first := requireThirdRefused(t, addr)
	require.Positive(t, p.Stats().AddrRefusedConcurrent) // one per Initial quic-go handles: a client may send more than one
	requireRoomAfterClose(t, addr, first)
}

// requireThirdRefused dials addr three times: the first two connect, the
// third is refused in its handshake. It returns the first.
func requireThirdRefused(t *testing.T, addr string) *quic.Conn {
	t.Helper()
	first, err := dialQUIC(t, addr)
	require.NoError(t, err)
	_, err = dialQUIC(t, addr)
	require.NoError(t, err)
	_, err = dialQUIC(t, addr)
	var te *quic.TransportError
	require.ErrorAs(t, err, &te, "the third is refused in the handshake")
	require.Equal(t, quic.ConnectionRefused, te.ErrorCode)
	return first
}

// requireRoomAfterClose closes c and checks that a new dial to addr then
// succeeds. The place comes back when the proxy's side of c ends: at once
// when its CONNECTION_CLOSE arrives, at worst at the 5 s idle timeout
// (once, under make test's load, 5 s were not enough): 15 s.
func requireRoomAfterClose(t *testing.T, addr string, c *quic.Conn) {
	t.Helper()
	c.CloseWithError(0, "")
	require.Eventually(t, func() bool {
		_, err := dialQUIC(t, addr)
		return err == nil
	}, 15*time.Second, 50*time.Millisecond, "room again once one closed")
}

// MaxConns on a configured transport refuses the connection past it before
// its handshake, handshakes under way counting, and never serves it; once
// half of it is taken a new client must answer a Retry first (spoofed
// Initials cannot hold the places); a closed one makes room again.
func TestMaxConnsBeforeHandshake(t *testing.T) {
	p, addr := startProxyTransport(t, proxy.Config{MaxConns: 2, MaxConnsPerAddr: -1, NewConnsPerAddr: -1})
	first := requireThirdRefused(t, addr)
	require.Positive(t, p.Stats().ConnsRejected) // one per Initial quic-go handles
	require.Positive(t, p.Stats().AddrRetries, "the second and third were asked for a Retry")
	require.Eventually(t, func() bool { return p.Stats().ConnsAccepted >= 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.EqualValues(t, 2, p.Stats().ConnsAccepted, "the refused one never reached the proxy")
	requireRoomAfterClose(t, addr, first)
}

// Under half of MaxConns no Retry is asked for; from half on, every new
// connection answers one before its handshake.
func TestMaxConnsRetryPastHalf(t *testing.T) {
	p, addr := startProxyTransport(t, proxy.Config{MaxConns: 4, MaxConnsPerAddr: -1, NewConnsPerAddr: -1})
	for range 2 {
		_, err := dialQUIC(t, addr)
		require.NoError(t, err)
	}
	require.Zero(t, p.Stats().AddrRetries, "two of four places: no Retry")
	_, err := dialQUIC(t, addr)
	require.NoError(t, err, "the third passes, after a Retry")
	require.Positive(t, p.Stats().AddrRetries)
}

// New connections per second from one address: past half the burst the
// client is asked for a Retry (and passes it), past the burst it is
// refused.
func TestAddrNewConnRate(t *testing.T) {
	p, addr := startProxyTransport(t, proxy.Config{MaxConnsPerAddr: -1, NewConnsPerAddr: 1}) // burst 2
	_, err := dialQUIC(t, addr)
	require.NoError(t, err)
	_, err = dialQUIC(t, addr)
	require.NoError(t, err, "the second passes, after a Retry")
	_, err = dialQUIC(t, addr)
	var te *quic.TransportError
	require.ErrorAs(t, err, &te)
	require.Equal(t, quic.ConnectionRefused, te.ErrorCode)
	st := p.Stats()
	require.Positive(t, st.AddrRefusedRate)
	require.Positive(t, st.AddrRetries)
	// The proxy counts a connection when its accept loop takes it, which
	// can be after the client's dial returned.
	require.Eventually(t, func() bool { return p.Stats().ConnsAccepted >= 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.EqualValues(t, 2, p.Stats().ConnsAccepted, "the refused one never reached the proxy")
}

// The TCP carriers' connections count under the same per-address limits:
// a third HTTP/2 connection from 127.0.0.1 is closed at accept, and a
// closed one makes room again.
func TestAddrConcurrentLimitTCP(t *testing.T) {
	env := startProxy(t, proxy.Config{MaxConnsPerAddr: 2, NewConnsPerAddr: 1000})
	addr := env.startTCP(t)
	dial := func() (*client.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.Dial(ctx, addr, &client.Config{TLSConfig: loopbackCert(t).ClientTLS(), Carrier: client.CarrierH2})
	}
	first, err := dial()
	require.NoError(t, err)
	second, err := dial()
	require.NoError(t, err)
	defer second.Close()
	_, err = dial()
	require.Error(t, err, "the third is closed at accept")
	require.EqualValues(t, 1, env.proxy.Stats().AddrRefusedConcurrent)

	first.Close()
	require.Eventually(t, func() bool {
		c, err := dial()
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "room again once one closed")
}
