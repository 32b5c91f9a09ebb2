package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// rawClient is quic-go's stock HTTP/3 client, an independent peer for
// requests masqroute's own client would never send.
type rawClient struct {
	qc *quic.Conn
	cc *http3.ClientConn
}

func (e *proxyEnv) rawDial(t testing.TB) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, e.addr, clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
	require.NoError(t, err)
	tr := &http3.Transport{EnableDatagrams: true}
	rc := &rawClient{qc: qc, cc: tr.NewClientConn(qc)}
	t.Cleanup(func() { qc.CloseWithError(0x100, "") })
	return rc
}

// do sends a request with the given method, :protocol and path and returns
// the response.
func (c *rawClient) do(t testing.TB, method, proto, path string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := url.Parse("https://" + c.qc.RemoteAddr().String() + path)
	require.NoError(t, err)
	req := (&http.Request{Method: method, Proto: proto, Host: u.Host, URL: u, Header: http.Header{}}).WithContext(ctx)
	if method == http.MethodConnect {
		req.Header.Set("Capsule-Protocol", "?1")
	}
	resp, err := c.cc.RoundTrip(req)
	require.NoError(t, err)
	return resp
}

func udpPath(host, port string) string {
	return "/.well-known/masque/udp/" + host + "/" + port + "/"
}

// checkRefusal asserts the status and that Proxy-Status names the error.
func checkRefusal(t testing.TB, resp *http.Response, status int, proxyError string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "Proxy-Status: %s", resp.Header.Get("Proxy-Status"))
	ps := resp.Header.Get("Proxy-Status")
	require.True(t, strings.HasPrefix(ps, "masqroute"), "Proxy-Status %q", ps)
	if proxyError != "" {
		require.Contains(t, ps, "error="+proxyError)
	}
	require.Empty(t, resp.Header.Get("Capsule-Protocol"), "refusals carry no Capsule-Protocol")
}

// The bad-input table of the design, row by row, over the wire.
func TestBadInputTable(t *testing.T) {
	resolver := &fakeResolver{answers: map[string][]netip.Addr{
		"loopback.test": {netip.MustParseAddr("127.0.0.1")},
		"private.test":  {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.168.1.1")},
	}, slow: "slow.test"}
	env := startProxy(t, proxy.Config{Policy: policy.Default(), Resolver: resolver, ResolveTimeout: 200 * time.Millisecond})
	c := env.rawDial(t)
	port := "9"
	cases := []struct {
		name, method, proto, path string
		status                    int
		proxyError                string
	}{
		{"method not CONNECT", http.MethodGet, "", udpPath("192.0.2.1", port), 405, "http_request_error"},
		{"POST", http.MethodPost, "", udpPath("192.0.2.1", port), 405, "http_request_error"},
		{"protocol not supported", http.MethodConnect, "connect-tcp", udpPath("192.0.2.1", port), 501, "http_request_error"},
		{"path does not match", http.MethodConnect, "connect-udp", "/masque/udp/192.0.2.1/9/", 404, "http_request_error"},
		{"extra segment", http.MethodConnect, "connect-udp", udpPath("192.0.2.1", port) + "x/", 404, ""},
		{"non-numeric port", http.MethodConnect, "connect-udp", udpPath("192.0.2.1", "abc"), 400, "http_request_error"},
		{"port 0", http.MethodConnect, "connect-udp", udpPath("192.0.2.1", "0"), 400, ""},
		{"port above 65535", http.MethodConnect, "connect-udp", udpPath("192.0.2.1", "65536"), 400, ""},
		{"bad host", http.MethodConnect, "connect-udp", udpPath("bad_host", port), 400, ""},
		{"loopback refused", http.MethodConnect, "connect-udp", udpPath("127.0.0.1", port), 403, "destination_ip_prohibited"},
		{"IPv6 loopback refused", http.MethodConnect, "connect-udp", udpPath("%3A%3A1", port), 403, "destination_ip_prohibited"},
		{"mapped loopback refused", http.MethodConnect, "connect-udp", udpPath("%3A%3Affff%3A127.0.0.1", port), 403, ""},
		{"decimal loopback refused", http.MethodConnect, "connect-udp", udpPath("2130706433", port), 403, ""},
		{"metadata address refused", http.MethodConnect, "connect-udp", udpPath("169.254.169.254", port), 403, ""},
		{"private refused", http.MethodConnect, "connect-udp", udpPath("10.0.0.1", port), 403, ""},
		{"name resolving to loopback", http.MethodConnect, "connect-udp", udpPath("loopback.test", port), 403, "destination_ip_prohibited"},
		{"name resolving to private", http.MethodConnect, "connect-udp", udpPath("private.test", port), 403, ""},
		{"DNS failure", http.MethodConnect, "connect-udp", udpPath("nxdomain.test", port), 502, "dns_error"},
		{"DNS timeout", http.MethodConnect, "connect-udp", udpPath("slow.test", port), 502, "dns_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.do(t, tc.method, tc.proto, tc.path)
			checkRefusal(t, resp, tc.status, tc.proxyError)
		})
	}
	st := env.proxy.Stats()
	require.Equal(t, uint64(len(cases)), sumRejected(st.Rejected))
	require.Equal(t, uint64(8), st.RefusedPolicy)
	require.Equal(t, uint64(2), st.FailedDNS)
	require.Zero(t, st.Tunnels)
}

func sumRejected(m map[int]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

type fakeResolver struct {
	answers map[string][]netip.Addr
	slow    string
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	if host == r.slow {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if a, ok := r.answers[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// An init failure (any kind) is a 502 and the proxy keeps serving.
func TestInitFailureIs502(t *testing.T) {
	kinds := engine.NewRegistry()
	kinds.Register("connect-broken", engine.KindFunc(func(context.Context, *engine.Session, engine.Args) (engine.Handler, error) {
		panic("broken kind")
	}))
	env := startProxy(t, proxy.Config{Kinds: kinds})
	c := env.rawDial(t)
	checkRefusal(t, c.do(t, http.MethodConnect, "connect-broken", "/anything"), 502, "proxy_internal_error")
	// Still serving.
	u := dialUDP(t, env.dial(t), env.echo.Addr().String())
	echoOnce(t, u, []byte("still here"))
}

// The tunnel limit per connection and in total answers 503.
func TestTunnelLimits(t *testing.T) {
	t.Run("per connection", func(t *testing.T) {
		env := startProxy(t, proxy.Config{MaxTunnelsPerConn: 2})
		c := env.dial(t)
		dialUDP(t, c, env.echo.Addr().String())
		dialUDP(t, c, env.echo.Addr().String())
		_, err := c.DialUDP(context.Background(), env.echo.Addr().String())
		var pe *client.ProxyError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, 503, pe.Status)
		require.Contains(t, pe.ProxyStatus, "tunnel limit")
		// Another connection has its own limit.
		dialUDP(t, env.dial(t), env.echo.Addr().String())
		// Refused before it waited for anything: the router never saw it.
		require.Equal(t, uint64(1), env.proxy.Stats().Rejected[503])
	})
	t.Run("total", func(t *testing.T) {
		env := startProxy(t, proxy.Config{MaxTunnels: 2})
		dialUDP(t, env.dial(t), env.echo.Addr().String())
		dialUDP(t, env.dial(t), env.echo.Addr().String())
		_, err := env.dial(t).DialUDP(context.Background(), env.echo.Addr().String())
		var pe *client.ProxyError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, 503, pe.Status)
	})
}

// The authorization hook picks the status and headers of a refusal.
func TestAuthorizeHook(t *testing.T) {
	env := startProxy(t, proxy.Config{Authorize: func(r *http.Request) error {
		switch r.Header.Get("Authorization") {
		case "":
			return &proxy.StatusError{Status: 407, ProxyError: "http_request_denied",
				Header: http.Header{"Proxy-Authenticate": {`Basic realm="masqroute"`}}}
		case "Bearer good":
			return nil
		case "Bearer expired":
			return &proxy.StatusError{Status: 401, Header: http.Header{"Www-Authenticate": {"Bearer"}}}
		}
		return errors.New("unknown token")
	}})
	c := env.rawDial(t)
	path := udpPath(env.echo.Addr().Addr().String(), itoa(env.echo.Addr().Port()))
	send := func(auth string) *http.Response {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		u, _ := url.Parse("https://" + env.addr + path)
		req := (&http.Request{Method: http.MethodConnect, Proto: "connect-udp", Host: u.Host, URL: u,
			Header: http.Header{"Capsule-Protocol": {"?1"}}}).WithContext(ctx)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.cc.RoundTrip(req)
		require.NoError(t, err)
		return resp
	}
	resp := send("")
	checkRefusal(t, resp, 407, "http_request_denied")
	require.Equal(t, `Basic realm="masqroute"`, resp.Header.Get("Proxy-Authenticate"))
	resp = send("Bearer expired")
	checkRefusal(t, resp, 401, "")
	require.Equal(t, "Bearer", resp.Header.Get("Www-Authenticate"))
	checkRefusal(t, send("Bearer forged"), 403, "http_request_denied")
	resp = send("Bearer good")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "?1", resp.Header.Get("Capsule-Protocol"))
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}
