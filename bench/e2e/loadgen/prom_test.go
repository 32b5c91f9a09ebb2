package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sampleMetrics = `# HELP masqroute_router_dispatched_total Datagrams handed to the routers.
# TYPE masqroute_router_dispatched_total counter
masqroute_router_dispatched_total 1000
masqroute_router_delivered_total 990
masqroute_datagrams_total{direction="to_target"} 985
masqroute_datagrams_total{direction="to_client"} 980
masqroute_datagrams_dropped_total{reason="ring_full"} 10
masqroute_datagrams_dropped_total{reason="oversize"} 5
masqroute_datagrams_dropped_total{reason="closed"} 0
masqroute_bytes_total{direction="to_target"} 1.182e+06
`

func TestParseProxyMetrics(t *testing.T) {
	c, err := parseProxyMetrics(strings.NewReader(sampleMetrics))
	require.NoError(t, err)
	require.Equal(t, proxyHops(1000, 990, 985, 980), c.Hops)
	require.Equal(t, map[string]uint64{"proxy.ring_full": 10, "proxy.oversize": 5, "proxy.closed": 0}, c.Drops)
}

func TestPrometheusProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, sampleMetrics)
	}))
	defer srv.Close()
	c, err := PrometheusProbe(srv.URL+"/metrics", srv.Client()).Read(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1000), c.Hops[0].Count)
	_, err = PrometheusProbe(srv.URL+"/nope", srv.Client()).Read(context.Background())
	require.Error(t, err)
}

// TestParseProxyMetricsTypes: untyped samples (no TYPE line) count, a
// histogram family is skipped, a malformed exposition is an error.
func TestParseProxyMetricsTypes(t *testing.T) {
	c, err := parseProxyMetrics(strings.NewReader(`# TYPE masqroute_router_queue_delay_seconds histogram
masqroute_router_queue_delay_seconds_bucket{le="+Inf"} 3
masqroute_router_queue_delay_seconds_sum 0.1
masqroute_router_queue_delay_seconds_count 3
masqroute_router_dispatched_total{} 7 1700000000
masqroute_datapath_wakeups_total{goroutine="worker"} 4
masqroute_datagrams_dropped_total{reason="closed \"x\""} 2
`))
	require.NoError(t, err)
	require.Equal(t, uint64(7), c.Hops[0].Count)
	require.Equal(t, map[string]uint64{"wakeups.worker": 4}, c.DataPath)
	require.Equal(t, map[string]uint64{`proxy.closed "x"`: 2}, c.Drops, "escaped quotes in a label value")
	for _, bad := range []string{"novalue\n", `a{x="1" 3` + "\n", "a NaNx\n"} {
		_, err := parseProxyMetrics(strings.NewReader(bad))
		require.Error(t, err, bad)
	}
}

// FuzzParseProxyMetrics: any input parses or fails, never panics.
func FuzzParseProxyMetrics(f *testing.F) {
	f.Add(sampleMetrics)
	f.Add("a{x=\"1\"} 2\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = parseProxyMetrics(strings.NewReader(in))
	})
}

// TestWriteTextLossAndPlurals: one tunnel is "1 tunnel"; a loss without the
// proxy's hops gets the one line that says how to place it, and not with
// them.
func TestWriteTextLossAndPlurals(t *testing.T) {
	res := Result{Transport: "masqroute", Tunnels: 1, Conns: 1, Size: 100, Window: 8, Sent: 10, Received: 7, Lost: 3,
		Hops: []Hop{{Stage: StageSent, Name: "generator: sent", Count: 10}, {Stage: StageReceived, Name: "generator: received", Count: 7}}}
	var b strings.Builder
	require.NoError(t, res.WriteText(&b))
	require.Contains(t, b.String(), "masqroute: 1 tunnel over 1 connection,")
	require.Equal(t, 1, strings.Count(b.String(), "give -metrics"))

	res.Tunnels, res.Conns = 3, 2
	res.Hops = append(res.Hops, Hop{Stage: StageProxyIn, Name: "proxy: router dispatched", Count: 10})
	b.Reset()
	require.NoError(t, res.WriteText(&b))
	require.Contains(t, b.String(), "masqroute: 3 tunnels over 2 connections,")
	require.NotContains(t, b.String(), "give -metrics")
}
