package metrics_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/metrics"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// refusedPort is a loopback port the test policy denies: a tunnel to it is
// refused with 403 before any packet is sent.
const refusedPort = 9

// testProxy is a proxy on loopback with an echo target.
type testProxy struct {
	proxy *proxy.Proxy
	addr  string
	echo  *echo.Server
	cert  *devcert.Cert
}

func startProxy(t *testing.T, maxPayload int) *testProxy {
	t.Helper()
	pol, err := policy.New(policy.Config{
		Allow:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		DenyPorts: []policy.PortRange{{Lo: refusedPort, Hi: refusedPort}},
	})
	require.NoError(t, err)
	p, err := proxy.New(proxy.Config{
		Policy:             pol,
		MaxDatagramPayload: maxPayload,
		Logger:             slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	cert, err := devcert.Loopback()
	require.NoError(t, err)
	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, p.QUICConfig(&quic.Config{MaxIdleTimeout: 5 * time.Second}))
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		require.NoError(t, es.Close())
	})
	return &testProxy{proxy: p, addr: ln.Addr().String(), echo: es, cert: cert}
}

func (tp *testProxy) dial(t *testing.T) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, tp.addr, &client.Config{
		TLSConfig:  tp.cert.ClientTLS(),
		QUICConfig: &quic.Config{MaxIdleTimeout: 5 * time.Second},
		Logger:     slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	return c
}

// echoOnce sends msg through u and waits for it to come back, resending a
// few times (datagrams may be lost even on loopback). It returns how many
// times msg was sent.
func echoOnce(t *testing.T, u *client.UDPConn, msg []byte) int {
	t.Helper()
	buf := make([]byte, 2048)
	for attempt := 1; ; attempt++ {
		_, err := u.Write(msg)
		require.NoError(t, err)
		require.NoError(t, u.SetReadDeadline(time.Now().Add(500*time.Millisecond)))
		n, err := u.Read(buf)
		if err == nil {
			require.Equal(t, msg, buf[:n])
			return attempt
		}
		require.Less(t, attempt, 6, "no echo: %v", err)
	}
}

// gather scrapes c through a pedantic registry (which checks that every
// collected metric matches a described one) and returns the families by
// name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the series of family name whose labels include
// labels ("k=v" pairs); it fails if there is not exactly one.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := fams[name]
	require.True(t, ok, "no family %s", name)
	var found []float64
	for _, m := range mf.GetMetric() {
		if hasLabels(m, labels) {
			switch {
			case m.GetCounter() != nil:
				found = append(found, m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				found = append(found, m.GetGauge().GetValue())
			}
		}
	}
	require.Len(t, found, 1, "%s%v", name, labels)
	return found[0]
}

func hasLabels(m *dto.Metric, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		ok := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// documentedNames are the metric names the package doc lists.
func documentedNames(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^//\s+(masqroute_[a-z_]+)`).FindAllStringSubmatch(string(doc), -1) {
		names = append(names, m[1])
	}
	return names
}

func TestCollectorIdleProxy(t *testing.T) {
	tp := startProxy(t, 0)
	c := metrics.NewCollector(tp.proxy)

	// Every family is there before any traffic, and lint-clean.
	fams := gather(t, c)
	got := make([]string, 0, len(fams))
	for name := range fams {
		got = append(got, name)
	}
	require.ElementsMatch(t, documentedNames(t), got, "families collected vs. listed in doc.go")
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)

	var reasons []string
	for _, m := range fams["masqroute_datagrams_dropped_total"].GetMetric() {
		reasons = append(reasons, m.GetLabel()[0].GetValue())
	}
	require.ElementsMatch(t, []string{
		"unknown_stream", "pending_overflow", "ring_full", "closed", "held_refused",
		"malformed", "unknown_context", "oversize", "amplification", "rate_limited", "send_error", "return_oversize", "return_send_error", "teardown",
		"return_queue_full", "return_stream_blocked", "return_closed",
		"capsule_error", "datagram_error",
		"ip_source", "ip_scope", "ip_hop_limit", "ip_no_tunnel", "ip_return_closed", "ip_network_malformed",
	}, reasons)
	// 11 statuses with reason other, and policy (403), dns and dial (502).
	require.Equal(t, 14, testutil.CollectAndCount(c, "masqroute_tunnels_rejected_total"))
	require.Equal(t, 1, testutil.CollectAndCount(c, "masqroute_tunnels_opened_total"), "connect-udp, at 0")
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if name == "masqroute_datapath_gso_disabled" && runtime.GOOS != "linux" {
				continue // no GSO off Linux: 1 from the start
			}
			require.Zero(t, v, "%s %v", name, m.GetLabel())
		}
	}
}

func TestCollectorCountsTraffic(t *testing.T) {
	const maxPayload = 200
	tp := startProxy(t, maxPayload)
	c := metrics.NewCollector(tp.proxy)

	conn := tp.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := conn.DialUDP(ctx, tp.echo.Addr().String())
	require.NoError(t, err)

	// Three echoes of 100 bytes each.
	sent := 0
	for i := range 3 {
		msg := []byte(strings.Repeat(string(rune('a'+i)), 100))
		sent += echoOnce(t, u, msg)
	}
	// One datagram over the payload limit: dropped by the tunnel.
	_, err = u.Write(make([]byte, maxPayload+1))
	require.NoError(t, err)
	// One tunnel refused by the policy.
	_, err = conn.DialUDP(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), refusedPort).String())
	var pe *client.ProxyError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, http.StatusForbidden, pe.Status)

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := tp.proxy.Stats()
		assert.EqualValues(ct, 1, st.DropOversize)
		// The proxy counts a datagram to the client after SendDatagram
		// returns, so the client may hold the last echo a moment before
		// the counter moves.
		assert.GreaterOrEqual(ct, st.ToClient, uint64(3))
	}, 5*time.Second, 10*time.Millisecond)

	fams := gather(t, c)
	require.Equal(t, 1.0, value(t, fams, "masqroute_connections"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_connections_accepted_total"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_tunnels_active"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_tunnels_opened_total", "kind=connect-udp"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_tunnels_open", "kind=connect-udp"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_tunnels_rejected_total", "status=403", "reason=policy"))
	require.Zero(t, value(t, fams, "masqroute_tunnels_rejected_total", "status=403", "reason=other"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_datagrams_dropped_total", "reason=oversize"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_router_sessions", "state=active"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_router_sessions_activated_total"))

	// Every echo that came back was written to the target and sent back;
	// a resend may have been echoed late, so the counts are at least 3.
	toTarget := value(t, fams, "masqroute_datagrams_total", "direction=to_target")
	toClient := value(t, fams, "masqroute_datagrams_total", "direction=to_client")
	require.GreaterOrEqual(t, toTarget, 3.0)
	require.LessOrEqual(t, toTarget, float64(sent))
	require.GreaterOrEqual(t, toClient, 3.0)
	require.Equal(t, 100*toTarget, value(t, fams, "masqroute_bytes_total", "direction=to_target"))
	require.Equal(t, 100*toClient, value(t, fams, "masqroute_bytes_total", "direction=to_client"))
	// The oversize one went through the router too.
	require.GreaterOrEqual(t, value(t, fams, "masqroute_router_dispatched_total"), toTarget+1)
	require.GreaterOrEqual(t, value(t, fams, "masqroute_router_delivered_total"), toTarget+1)

	// Closing the tunnel and the connection brings the gauges back to 0;
	// the counters stay.
	require.NoError(t, u.Close())
	require.NoError(t, conn.Close())
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := tp.proxy.Stats()
		assert.Zero(ct, st.Conns)
		assert.Zero(ct, st.Tunnels)
	}, 5*time.Second, 10*time.Millisecond)
	fams = gather(t, c)
	require.Zero(t, value(t, fams, "masqroute_connections"))
	require.Zero(t, value(t, fams, "masqroute_tunnels_active"))
	require.Zero(t, value(t, fams, "masqroute_router_sessions", "state=active"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_router_sessions_closed_total"))
	require.Equal(t, 1.0, value(t, fams, "masqroute_tunnels_opened_total", "kind=connect-udp"))
	require.Zero(t, value(t, fams, "masqroute_tunnels_open", "kind=connect-udp"))
	require.Equal(t, toTarget, value(t, fams, "masqroute_datagrams_total", "direction=to_target"))

	// The exact form of a few families, as a scraper sees them.
	err = testutil.CollectAndCompare(c, strings.NewReader(`
# HELP masqroute_tunnels_opened_total Tunnel requests answered with a 2xx status, by kind (the request's :protocol).
# TYPE masqroute_tunnels_opened_total counter
masqroute_tunnels_opened_total{kind="connect-udp"} 1
# HELP masqroute_connections_accepted_total HTTP/3 connections accepted and served.
# TYPE masqroute_connections_accepted_total counter
masqroute_connections_accepted_total 1
# HELP masqroute_router_sessions_rejected_total Session starts the routers refused, by reason: limit (tunnel limit), exists (stream already routed), kind (no session kind).
# TYPE masqroute_router_sessions_rejected_total counter
masqroute_router_sessions_rejected_total{reason="exists"} 0
masqroute_router_sessions_rejected_total{reason="kind"} 0
masqroute_router_sessions_rejected_total{reason="limit"} 0
`), "masqroute_tunnels_opened_total", "masqroute_connections_accepted_total", "masqroute_router_sessions_rejected_total")
	require.NoError(t, err)
}
