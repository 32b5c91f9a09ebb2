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

func TestParseSample(t *testing.T) {
	name, labels, v, ok := parseSample(`a_total{x="1",y="two"} 42 1700000000`)
	require.True(t, ok)
	require.Equal(t, "a_total", name)
	require.Equal(t, map[string]string{"x": "1", "y": "two"}, labels)
	require.Equal(t, uint64(42), v)
	for _, bad := range []string{"novalue", `a{x="1" 3`, "a NaNx", "a -1"} {
		_, _, _, ok := parseSample(bad)
		require.False(t, ok, bad)
	}
}
