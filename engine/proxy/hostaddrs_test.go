package proxy_test

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// The host's own addresses are refused by default, whether named directly,
// IPv4-mapped or through a name. The addresses are injected: public ones the
// test only names, and never sends to (the refusal comes before any socket).
func TestHostAddressesRefused(t *testing.T) {
	host := []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("2001:4860:4860::8888")}
	env := startProxy(t, proxy.Config{
		HostAddrs: func() ([]netip.Addr, error) { return host, nil },
		Resolver:  &fakeResolver{answers: map[string][]netip.Addr{"self.test": {host[0]}}},
	})
	require.ElementsMatch(t, host, env.proxy.HostAddrs())
	c := env.rawDial(t)
	for _, target := range []string{udpPath("8.8.8.8", "53"), udpPath("self.test", "53"),
		udpPath("2001%3A4860%3A4860%3A%3A8888", "53"), udpPath("%3A%3Affff%3A8.8.8.8", "53")} {
		resp := c.do(t, http.MethodConnect, "connect-udp", target)
		checkRefusal(t, resp, http.StatusForbidden, "destination_ip_prohibited")
		require.Contains(t, resp.Header.Get("Proxy-Status"), "own host", target)
	}
}

// The proxy's own listening address and port is refused even where the
// policy allows its address (here: loopback, as -dev does).
func TestProxyOwnAddressRefused(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	ap := netip.MustParseAddrPort(env.addr)
	resp := env.rawDial(t).do(t, http.MethodConnect, "connect-udp", udpPath(ap.Addr().String(), itoa(ap.Port())))
	checkRefusal(t, resp, http.StatusForbidden, "destination_ip_prohibited")
	require.Contains(t, resp.Header.Get("Proxy-Status"), "the proxy itself")
	// The echo target on the same host, another port, still works.
	echoOnce(t, dialUDP(t, env.dial(t), env.echo.Addr().String()), []byte("hi"))
}

// When the source of change notifications (injected here) says the host's
// addresses changed, the proxy reads them again: an address the host took
// is refused from then on, one it let go is no longer on the list. The
// watch runs from Serve until Close (goleak checks that it ends).
func TestHostAddrsFollowChanges(t *testing.T) {
	var host atomic.Pointer[[]netip.Addr]
	host.Store(&[]netip.Addr{netip.MustParseAddr("8.8.8.8")})
	changes, watching := make(chan struct{}), make(chan struct{})
	env := startProxy(t, proxy.Config{
		HostAddrs: func() ([]netip.Addr, error) { return *host.Load(), nil },
		WatchHostAddrs: func(ctx context.Context, changed func()) error {
			close(watching)
			for {
				select {
				case <-changes:
					changed()
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		},
	})
	select {
	case <-watching:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not start with Serve")
	}
	c := env.rawDial(t)
	refusedAsOwn := func(addr string) {
		t.Helper()
		resp := c.do(t, http.MethodConnect, "connect-udp", udpPath(addr, "53"))
		checkRefusal(t, resp, http.StatusForbidden, "destination_ip_prohibited")
		require.Contains(t, resp.Header.Get("Proxy-Status"), "own host", addr)
	}
	refusedAsOwn("8.8.8.8")
	host.Store(&[]netip.Addr{netip.MustParseAddr("8.8.4.4")})
	changes <- struct{}{}
	require.Eventually(t, func() bool {
		return slices.Equal(env.proxy.HostAddrs(), []netip.Addr{netip.MustParseAddr("8.8.4.4")})
	}, 5*time.Second, time.Millisecond, "read again after the notification")
	refusedAsOwn("8.8.4.4")
}
