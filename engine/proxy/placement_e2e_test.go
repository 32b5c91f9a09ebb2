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
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

// TestWorkerAffinityPerTransport: a proxy with 2 workers on 2 transports
// whose ConnContext marks their connections WithWorker(transport index),
// as the daemon's -transports does: every tunnel of a connection on
// transport i is placed on worker i. A third transport without the mark
// spreads its tunnels round-robin.
func TestWorkerAffinityPerTransport(t *testing.T) {
	p, err := proxy.New(proxy.Config{Policy: loopbackPolicy(t), Logger: slog.New(slog.DiscardHandler), Workers: 2})
	require.NoError(t, err)
	tlsConf := p.TLSConfig(loopbackCert(t).ServerTLS())
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { es.Close() })
	var addrs []string
	done := make(chan error, 3)
	for i := range 3 {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: udp}
		if i < 2 {
			tr.ConnContext = func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
				return proxy.WithWorker(ctx, i), nil
			}
		}
		ln, err := tr.Listen(tlsConf, p.QUICConfig(&quic.Config{MaxIdleTimeout: 5 * time.Second}))
		require.NoError(t, err)
		go func() { done <- p.Serve(ln) }()
		addrs = append(addrs, udp.LocalAddr().String())
		t.Cleanup(func() {
			ln.Close()
			tr.Close()
			udp.Close()
		})
	}
	t.Cleanup(func() {
		p.Close()
		for range 3 {
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		}
	})

	// transport 1: 1 connection × 2 tunnels; transport 0: 2 × 3 (round-robin
	// would have made 4 and 4); the unmarked transport: 1 × 4, 2 and 2.
	tunnels := func(addr string, conns, each int) {
		for range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := client.Dial(ctx, addr, &client.Config{
				TLSConfig: loopbackCert(t).ClientTLS(), QUICConfig: &quic.Config{MaxIdleTimeout: 5 * time.Second},
				Logger: slog.New(slog.DiscardHandler),
			})
			cancel()
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			for range each {
				echoOnce(t, dialUDP(t, c, es.Addr().String()), []byte("affinity"))
			}
		}
	}
	tunnels(addrs[1], 1, 2)
	tunnels(addrs[0], 2, 3)
	require.Equal(t, []uint64{6, 2}, p.Stats().DataPath.WorkerPlaced, "tunnels by worker: transport i's on worker i")
	tunnels(addrs[2], 1, 4)
	require.Equal(t, []uint64{8, 4}, p.Stats().DataPath.WorkerPlaced, "unmarked: round-robin")
}
