package baseline

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseTarget(t *testing.T) {
	for path, want := range map[string]int{
		"/.well-known/masque/udp/127.0.0.1/443/":      http.StatusOK,
		"/.well-known/masque/udp/localhost/53/":       http.StatusOK,
		"/.well-known/masque/udp/::1/53/":             http.StatusOK,
		"/.well-known/masque/udp/::ffff:127.0.0.2/9/": http.StatusOK,
		"/.well-known/masque/udp/192.0.2.1/53/":       http.StatusForbidden,
		"/.well-known/masque/udp/example.com/53/":     http.StatusBadRequest,
		"/.well-known/masque/udp/127.0.0.1/0/":        http.StatusBadRequest,
		"/.well-known/masque/udp/127.0.0.1/x/":        http.StatusBadRequest,
		"/.well-known/masque/udp/127.0.0.1/65536/":    http.StatusBadRequest,
		"/.well-known/masque/udp/127.0.0.1/53":        http.StatusNotFound,
		"/other/127.0.0.1/53/":                        http.StatusNotFound,
	} {
		got, status := parseTarget(path)
		require.Equal(t, want, status, path)
		if status == http.StatusOK {
			require.True(t, got.Addr().IsLoopback(), path)
		}
	}
	got, _ := parseTarget("/.well-known/masque/udp/::ffff:127.0.0.2/9/")
	require.Equal(t, netip.MustParseAddrPort("127.0.0.2:9"), got)
}

// masqroute's client drives the baseline: datagrams round-trip through it,
// refusals come back with their status, and Close leaves nothing running.
func TestBaselineWithMasqrouteClient(t *testing.T) {
	cert, err := devcert.Loopback()
	require.NoError(t, err)
	s, err := Listen("127.0.0.1:0", cert.ServerTLS(), &quic.Config{MaxIdleTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr().String(), &client.Config{TLSConfig: cert.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer c.Close()

	u, err := c.DialUDP(ctx, es.Addr().String())
	require.NoError(t, err)
	buf := make([]byte, 2048)
	for i := range 20 {
		msg := []byte{byte(i), 1, 2, 3}
		_, err := u.Write(msg)
		require.NoError(t, err)
		u.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := u.Read(buf)
		require.NoError(t, err, "datagram %d", i)
		require.Equal(t, msg, buf[:n])
	}
	require.Equal(t, uint64(20), s.Stats().ToTarget)
	// The proxy counts a reply after SendDatagram returns, so the client
	// can read the last echo before the counter moves.
	require.Eventually(t, func() bool { return s.Stats().ToClient == 20 }, 2*time.Second, time.Millisecond)
	require.NoError(t, u.Close())

	for target, status := range map[string]int{
		"192.0.2.1:53":  http.StatusForbidden,
		"127.0.0.1:0":   http.StatusBadRequest,
		"example.com:1": http.StatusBadRequest,
	} {
		_, err := c.DialUDP(ctx, target)
		var pe *client.ProxyError
		require.True(t, errors.As(err, &pe), "%s: %v", target, err)
		require.Equal(t, status, pe.Status, target)
	}
	// A tunnel left open is ended by Close.
	_, err = c.DialUDP(ctx, es.Addr().String())
	require.NoError(t, err)
}
