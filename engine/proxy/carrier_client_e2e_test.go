package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// dialCarrier connects masqroute's client to addr with carrier.
func dialCarrier(t testing.TB, addr, carrier string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, &client.Config{TLSConfig: loopbackCert(t).ClientTLS(), Carrier: carrier,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// masqroute's own client opens CONNECT-UDP tunnels over HTTP/2 and
// HTTP/1.1 (several at once on one Conn), echoes through them, is refused
// with a *ProxyError, and ends them on Close.
func TestClientTCPCarriersConnectUDP(t *testing.T) {
	for _, carrier := range []string{client.CarrierH2, client.CarrierH1} {
		t.Run(carrier, func(t *testing.T) {
			env := startProxy(t, proxy.Config{})
			addr := env.startTCP(t)
			c := dialCarrier(t, addr, carrier)
			require.Equal(t, carrier, c.Carrier())
			var tunnels []*client.UDPConn
			for range 3 {
				tunnels = append(tunnels, dialUDP(t, c, env.echo.Addr().String()))
			}
			for i, u := range tunnels {
				for j := range 5 {
					echoOnce(t, u, fmt.Appendf(nil, "%s tunnel %d datagram %d", carrier, i, j))
				}
				require.NotNil(t, u.LocalAddr())
			}
			require.EqualValues(t, 3, env.proxy.Stats().TunnelsByProtocol["connect-udp"])

			_, err := c.DialUDP(context.Background(), "10.0.0.1:53") // not allowed by the policy
			pe, ok := errors.AsType[*client.ProxyError](err)
			require.True(t, ok, "%v", err)
			require.Equal(t, 403, pe.Status)

			require.NoError(t, tunnels[0].Close())
			_, err = tunnels[0].Write([]byte("after close"))
			require.ErrorIs(t, err, net.ErrClosed)
			require.Eventually(t, func() bool { return env.proxy.Stats().TunnelsByProtocol["connect-udp"] == 2 },
				5*time.Second, 10*time.Millisecond, "Close ends the tunnel at the proxy")
			echoOnce(t, tunnels[1], []byte("the others go on"))

			require.NoError(t, c.Close())
			buf := make([]byte, 64)
			_, err = tunnels[2].Read(buf)
			require.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

// The proxy ending a TCP tunnel (Close) shows as the end of the client's
// tunnel: its Read fails rather than hanging.
func TestClientTCPCarrierProxyEnds(t *testing.T) {
	for _, carrier := range []string{client.CarrierH2, client.CarrierH1} {
		t.Run(carrier, func(t *testing.T) {
			env := startProxy(t, proxy.Config{})
			addr := env.startTCP(t)
			u := dialUDP(t, dialCarrier(t, addr, carrier), env.echo.Addr().String())
			echoOnce(t, u, []byte("up"))
			env.proxy.Close()
			u.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := u.Read(make([]byte, 64))
			require.Error(t, err)
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the tunnel's end reached the client")
		})
	}
}

// CarrierAuto takes HTTP/3 where QUIC connects, and falls back to HTTP/2
// where it does not (no QUIC listener on the port): HTTP/2 starts after
// FallbackDelay, so the fallback costs about that much, not QUIC's
// handshake timeout.
func TestClientAutoCarrier(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := dialCarrier(t, env.addr, client.CarrierAuto)
	require.Equal(t, client.CarrierH3, c.Carrier())
	echoOnce(t, dialUDP(t, c, env.echo.Addr().String()), []byte("over h3"))

	tcpOnly := env.startTCP(t) // a TCP port with no QUIC listener behind the same number
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := client.Dial(ctx, tcpOnly, &client.Config{TLSConfig: loopbackCert(t).ClientTLS(), Carrier: client.CarrierAuto,
		FallbackDelay: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer c2.Close()
	took := time.Since(start)
	require.Equal(t, client.CarrierH2, c2.Carrier())
	require.GreaterOrEqual(t, took, 200*time.Millisecond, "HTTP/2 waited for the fallback delay")
	require.Less(t, took, 5*time.Second, "the fallback did not wait for QUIC's handshake timeout")
	echoOnce(t, dialUDP(t, c2, env.echo.Addr().String()), []byte("over h2"))

	// Neither carrier answers: both errors come back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	_, err = client.Dial(ctx2, dead, &client.Config{TLSConfig: loopbackCert(t).ClientTLS(), Carrier: client.CarrierAuto,
		Logger: slog.New(slog.DiscardHandler)})
	require.Error(t, err)
	require.ErrorContains(t, err, "over TCP")
}

// An unknown carrier is refused by Dial.
func TestClientUnknownCarrier(t *testing.T) {
	_, err := client.Dial(context.Background(), "127.0.0.1:1", &client.Config{Carrier: "h4"})
	require.ErrorContains(t, err, "unknown carrier")
}
