package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

func appendCapsule(b []byte, typ uint64, value []byte) []byte {
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, uint64(len(value)))
	return append(b, value...)
}

// DATAGRAM capsules on the request stream are datagrams too; unknown
// capsule types are skipped.
func TestDatagramCapsuleAccepted(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
	var b []byte
	b = appendCapsule(b, 0x2a, []byte("unknown capsule, skipped"))
	b = appendCapsule(b, 0x00, append([]byte{0}, "in a capsule"...))
	_, err := str.Write(b)
	require.NoError(t, err)
	id, payload := c.recv(t)
	require.Equal(t, str.StreamID(), id)
	require.Equal(t, "in a capsule", string(payload))
	require.Equal(t, uint64(1), env.proxy.Stats().CapsuleDatagrams)
}

// A malformed or oversize capsule resets the stream with H3_MESSAGE_ERROR
// (RFC 9297 §3.3) and ends the tunnel.
func TestBadCapsuleResetsStream(t *testing.T) {
	for name, capsule := range map[string][]byte{
		"oversize":  quicvarint.Append(quicvarint.Append(nil, 0), 1<<20), // DATAGRAM, 1 MiB
		"truncated": append(quicvarint.Append(quicvarint.Append(nil, 0), 10), "short"...),
	} {
		t.Run(name, func(t *testing.T) {
			env := startProxy(t, proxy.Config{})
			c := env.rawTunnelDial(t)
			str := c.open(t)
			require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
			_, err := str.Write(capsule)
			require.NoError(t, err)
			if name == "truncated" {
				str.Close() // end the stream inside the capsule
			}
			str.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = io.ReadAll(str)
			var serr *quic.StreamError
			require.ErrorAs(t, err, &serr)
			require.Equal(t, quic.StreamErrorCode(0x10e), serr.ErrorCode, "H3_MESSAGE_ERROR")
			waitFor(t, "tunnel gone", func() bool { return env.proxy.Stats().Tunnels == 0 })
			require.Equal(t, uint64(1), env.proxy.Stats().CapsuleErrors)
		})
	}
}

// The client resetting its stream mid-tunnel ends the tunnel at once.
func TestPeerResetMidTunnel(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
	c.send(t, str.StreamID(), []byte("x"))
	c.recv(t)
	str.CancelWrite(0x10c) // H3_REQUEST_CANCELLED
	str.CancelRead(0x10c)
	waitFor(t, "tunnel closed", func() bool {
		st := env.proxy.Stats()
		return st.Tunnels == 0 && st.Router.Closed == 1 && st.Router.Active == 0
	})
	// Later datagrams for the stream are dropped and counted.
	c.send(t, str.StreamID(), []byte("late"))
	waitFor(t, "late datagram dropped", func() bool { return env.proxy.Stats().Router.Dropped() >= 1 })
}

// The client closing its stream (FIN) ends the tunnel; masqroute's client
// does that on Close.
func TestClientCloseEndsTunnel(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	echoOnce(t, u, []byte("x"))
	require.NoError(t, u.Close())
	waitFor(t, "tunnel closed", func() bool { return env.proxy.Stats().Tunnels == 0 })
	_, err := u.Write([]byte("after close"))
	require.ErrorIs(t, err, net.ErrClosed)
}

// A tunnel idle for longer than the idle timeout is closed by the proxy and
// the client sees the end.
func TestTunnelIdleTimeout(t *testing.T) {
	env := startProxy(t, proxy.Config{IdleTimeout: 150 * time.Millisecond})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	echoOnce(t, u, []byte("x"))
	u.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := u.Read(make([]byte, 10))
	require.ErrorIs(t, err, io.EOF)
	st := env.proxy.Stats()
	require.Equal(t, uint64(1), st.IdleClosed)
	require.Zero(t, st.Tunnels)
}

// A client that vanishes without closing its connection is cleaned up by
// the QUIC idle timeout: connection, router and tunnels.
func TestClientVanishes(t *testing.T) {
	// quic-go takes no peer idle timeout below 5 s, so the proxy's own
	// must be short for the test to be.
	env := startProxyQUIC(t, proxy.Config{}, &quic.Config{MaxIdleTimeout: 500 * time.Millisecond})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := tr.Dial(ctx, mustUDPAddr(t, env.addr), clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
	require.NoError(t, err)
	c, err := client.NewConn(qc, env.addr, &client.Config{})
	require.NoError(t, err)
	for range 3 {
		u, err := c.DialUDP(ctx, env.echo.Addr().String())
		require.NoError(t, err)
		echoOnce(t, u, []byte("x"))
	}
	require.Equal(t, int64(3), env.proxy.Stats().Tunnels)
	// Vanish: the socket goes away without a CONNECTION_CLOSE.
	udp.Close()
	waitFor(t, "connection cleaned up", func() bool {
		st := env.proxy.Stats()
		return st.Conns == 0 && st.Tunnels == 0 && st.Router.Active == 0
	})
	c.Close()
	tr.Close()
}

func mustUDPAddr(t testing.TB, s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	require.NoError(t, err)
	return a
}

// Graceful shutdown: GOAWAY, new requests refused, existing tunnels keep
// working until they end or the deadline passes, then everything closes.
func TestGracefulShutdown(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	echoOnce(t, u, []byte("before"))

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.proxy.Shutdown(ctx) }()
	waitFor(t, "draining", func() bool {
		_, err := c.DialUDP(context.Background(), env.echo.Addr().String())
		var pe *client.ProxyError
		return errors.As(err, &pe) && pe.Status == 503 || err != nil && !errors.As(err, &pe)
	})
	// The existing tunnel still carries traffic.
	echoOnce(t, u, []byte("during"))
	// It outlives the deadline, so Shutdown cuts it.
	err := <-shutdown
	require.ErrorIs(t, err, context.DeadlineExceeded)
	st := env.proxy.Stats()
	require.Zero(t, st.Conns)
	require.Zero(t, st.Tunnels)
	// A new connection is refused.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	defer dcancel()
	_, err = client.Dial(dctx, env.addr, &client.Config{TLSConfig: loopbackCert(t).ClientTLS()})
	require.Error(t, err)
}

// Shutdown returns as soon as the last tunnel ends before the deadline.
func TestGracefulShutdownWaitsForTunnels(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.proxy.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned with a tunnel open: %v", err)
	default:
	}
	u.Close()
	select {
	case err := <-shutdown:
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown still waiting after the last tunnel closed")
	}
}

// A client without HTTP/3 datagrams tunnels in DATAGRAM capsules both ways
// (RFC 9297 §3.5).
func TestCapsuleOnlyClient(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, env.addr, clientTLS(t), &quic.Config{}) // no QUIC datagrams
	require.NoError(t, err)
	defer qc.CloseWithError(0x100, "")
	c := &rawTunnelConn{qc: qc, cc: (&http3.Transport{}).NewRawClientConn(qc)}
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
	_, err = str.Write(appendCapsule(nil, 0, append([]byte{0}, "capsules only"...)))
	require.NoError(t, err)
	str.SetReadDeadline(time.Now().Add(3 * time.Second))
	typ, err := quicvarint.Read(quicvarint.NewReader(str))
	require.NoError(t, err)
	require.Zero(t, typ, "DATAGRAM capsule")
	length, err := quicvarint.Read(quicvarint.NewReader(str))
	require.NoError(t, err)
	value := make([]byte, length)
	_, err = io.ReadFull(str, value)
	require.NoError(t, err)
	require.Equal(t, "\x00capsules only", string(value))
}
