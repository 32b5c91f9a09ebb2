package e2e

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDatapathMetrics(t *testing.T) {
	const text = `# HELP masqroute_datapath_wakeups_total Wake-ups.
# TYPE masqroute_datapath_wakeups_total counter
masqroute_datapath_wakeups_total 42
# TYPE masqroute_datapath_syscalls_total counter
masqroute_datapath_syscalls_total{hop="to_target",call="sendmmsg"} 7
masqroute_datapath_syscalls_total{hop="from_target",call="recvmmsg"} 9 1700000000
# TYPE masqroute_datapath_ready_sessions gauge
masqroute_datapath_ready_sessions 3
# TYPE masqroute_datapath_batch histogram
masqroute_datapath_batch_bucket{le="1"} 1
masqroute_datapath_batch_sum 30
masqroute_datapath_batch_count 10
# TYPE masqroute_datagrams_total counter
masqroute_datagrams_total{direction="to_target"} 100
`
	got, err := parseDatapathMetrics(strings.NewReader(text))
	require.NoError(t, err)
	require.Equal(t, map[string]Sample{
		"masqroute_datapath_wakeups_total":                                 {"counter", 42},
		"masqroute_datapath_syscalls_total{hop=to_target,call=sendmmsg}":   {"counter", 7},
		"masqroute_datapath_syscalls_total{hop=from_target,call=recvmmsg}": {"counter", 9},
		"masqroute_datapath_ready_sessions":                                {"gauge", 3},
		"masqroute_datapath_batch_sum":                                     {"histogram", 30},
		"masqroute_datapath_batch_count":                                   {"histogram", 10},
	}, got)
}

func TestMetricUnit(t *testing.T) {
	for series, want := range map[string]string{
		"masqroute_datapath_wakeups_total{goroutine=worker}":             "dp-wakeups-worker",
		"masqroute_datapath_syscalls_total{direction=to_target}":         "dp-syscalls-to-target",
		"masqroute_datapath_syscalls_total{hop=to_target,call=sendmmsg}": "dp-syscalls-to-target-sendmmsg",
		"masqroute_datapath_batched_datagrams_total{goroutine=sender}":   "dp-batched-datagrams-sender",
		"masqroute_datapath_workers":                                     "dp-workers",
		"masqroute_datapath_gso_disabled":                                "dp-gso-disabled",
		"masqroute_datapath_batch_sum":                                   "dp-batch-sum",
		"masqroute_datapath_x_total{a=b/c}":                              "dp-x-b-c",
	} {
		require.Equal(t, want, MetricUnit(series), series)
	}
}

func TestParseReady(t *testing.T) {
	c, err := Cert()
	require.NoError(t, err)
	p := &Process{Impl: Masqroute}
	require.NoError(t, p.parseReady("e2e-child addr=127.0.0.1:1 control=http://127.0.0.1:2 pinned=1 cert="+
		b64(c.PEM)))
	require.Equal(t, "127.0.0.1:1", p.Addr)
	require.Equal(t, "http://127.0.0.1:2", p.control)
	require.Equal(t, 1, p.Pinned)
	require.NotNil(t, p.TLS.RootCAs)
	require.Error(t, p.parseReady("hello"))
	require.Error(t, p.parseReady("e2e-child addr=x control=y pinned=0 cert=!!"))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
