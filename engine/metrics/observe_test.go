package metrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/metrics"
)

func TestBuildInfo(t *testing.T) {
	c := metrics.NewBuildInfo("v1.2.3", "abc123", "go1.26.0")
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP masqroute_build_info Always 1; its labels are the running binary's version, commit and Go version.
# TYPE masqroute_build_info gauge
masqroute_build_info{commit="abc123",goversion="go1.26.0",version="v1.2.3"} 1
`)))
}

func TestTunnelSetupHistogram(t *testing.T) {
	h := metrics.NewTunnelSetup()
	h.Observe("connect-udp", 300*time.Microsecond, nil)
	h.Observe("connect-udp", 2*time.Millisecond, nil)
	h.Observe("connect-udp", 5*time.Second, errors.New("dns timeout"))
	h.Observe("connect-ip", time.Millisecond, nil)
	problems, err := testutil.CollectAndLint(h, "masqroute_tunnel_setup_duration_seconds")
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Equal(t, 3, testutil.CollectAndCount(h, "masqroute_tunnel_setup_duration_seconds"), "kind × result series")

	fams := gather(t, h)
	mf := fams["masqroute_tunnel_setup_duration_seconds"]
	require.Equal(t, "HISTOGRAM", mf.GetType().String())
	for _, m := range mf.GetMetric() {
		if hasLabels(m, []string{"kind=connect-udp", "result=opened"}) {
			require.EqualValues(t, 2, m.GetHistogram().GetSampleCount())
			require.InDelta(t, 0.0023, m.GetHistogram().GetSampleSum(), 1e-9)
		}
		if hasLabels(m, []string{"kind=connect-udp", "result=refused"}) {
			require.EqualValues(t, 1, m.GetHistogram().GetSampleCount())
		}
	}
}
