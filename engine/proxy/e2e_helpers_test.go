package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

var (
	certOnce sync.Once
	testCert *devcert.Cert
)

func loopbackCert(t testing.TB) *devcert.Cert {
	certOnce.Do(func() {
		c, err := devcert.Loopback()
		if err != nil {
			panic(err)
		}
		testCert = c
	})
	return testCert
}

// loopbackPolicy opens loopback targets (tests echo on 127.0.0.1 and ::1)
// and keeps every other built-in refusal.
func loopbackPolicy(t testing.TB) *policy.Policy {
	p, err := policy.New(policy.Config{Allow: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}})
	require.NoError(t, err)
	return p
}

// proxyEnv is a proxy listening on loopback, with an echo target.
type proxyEnv struct {
	t     testing.TB
	proxy *proxy.Proxy
	ln    *quic.Listener
	addr  string
	echo  *echo.Server
	done  chan error
}

func startProxy(t testing.TB, cfg proxy.Config) *proxyEnv {
	t.Helper()
	return startProxyQUIC(t, cfg, &quic.Config{MaxIdleTimeout: 5 * time.Second})
}

// startProxyQUIC is startProxy with the listener's QUIC configuration.
func startProxyQUIC(t testing.TB, cfg proxy.Config, qconf *quic.Config) *proxyEnv {
	t.Helper()
	return startProxySetup(t, cfg, qconf, nil)
}

// startProxySetup is startProxyQUIC that calls setup, if not nil, on the
// proxy before it serves.
func startProxySetup(t testing.TB, cfg proxy.Config, qconf *quic.Config, setup func(*proxy.Proxy)) *proxyEnv {
	t.Helper()
	if cfg.Policy == nil {
		cfg.Policy = loopbackPolicy(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := proxy.New(cfg)
	require.NoError(t, err)
	if setup != nil {
		setup(p)
	}
	tlsConf := p.TLSConfig(loopbackCert(t).ServerTLS())
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, p.QUICConfig(qconf))
	require.NoError(t, err)
	e := &proxyEnv{t: t, proxy: p, ln: ln, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { e.done <- p.Serve(ln) }()
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	e.echo = es
	t.Cleanup(func() {
		p.Close()
		ln.Close()
		if err := <-e.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		es.Close()
	})
	return e
}

func (e *proxyEnv) dial(t testing.TB) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, e.addr, &client.Config{
		TLSConfig:  loopbackCert(t).ClientTLS(),
		QUICConfig: &quic.Config{MaxIdleTimeout: 5 * time.Second},
		Logger:     slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func dialUDP(t testing.TB, c *client.Conn, target string) *client.UDPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := c.DialUDP(ctx, target)
	require.NoError(t, err)
	t.Cleanup(func() { u.Close() })
	return u
}

// echoOnce sends msg and waits for it to come back.
func echoOnce(t testing.TB, u *client.UDPConn, msg []byte) {
	t.Helper()
	buf := make([]byte, 65536)
	for attempt := 0; ; attempt++ {
		_, err := u.Write(msg)
		require.NoError(t, err)
		u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := u.Read(buf)
		if err == nil {
			require.Equal(t, msg, buf[:n])
			return
		}
		if attempt == 5 {
			t.Fatalf("no echo after %d attempts: %v", attempt+1, err)
		}
	}
}

// clientTLS is a TLS config trusting the test certificate, for raw h3
// clients.
func clientTLS(t testing.TB) *tls.Config {
	c := loopbackCert(t).ClientTLS()
	c.NextProtos = []string{http3.NextProtoH3}
	return c
}
