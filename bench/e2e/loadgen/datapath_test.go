package loadgen

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

const sampleDataPath = `# TYPE masqroute_datapath_workers gauge
masqroute_datapath_workers 2
# TYPE masqroute_datapath_wakeups_total counter
masqroute_datapath_wakeups_total{goroutine="worker"} 50
masqroute_datapath_wakeups_total{goroutine="sender"} 30
masqroute_datapath_wakeups_total{goroutine="poller"} 20
masqroute_datapath_batches_total{goroutine="worker"} 250
masqroute_datapath_batched_datagrams_total{goroutine="worker"} 1000
masqroute_datapath_batches_total{goroutine="sender"} 0
masqroute_datapath_batched_datagrams_total{goroutine="sender"} 0
masqroute_datapath_syscalls_total{direction="to_target"} 400
masqroute_datapath_syscalls_total{direction="from_target"} 800
masqroute_datapath_datagrams_total{direction="to_target"} 1000
masqroute_datapath_datagrams_total{direction="from_target"} 1000
masqroute_datapath_empty_reads_total 100
masqroute_datapath_gso_disabled 0
`

func TestParseProxyMetricsDataPath(t *testing.T) {
	c, err := parseProxyMetrics(strings.NewReader(sampleMetrics + sampleDataPath))
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{
		"wakeups.worker": 50, "wakeups.sender": 30, "wakeups.poller": 20,
		"batches.worker": 250, "batched_datagrams.worker": 1000, "batches.sender": 0, "batched_datagrams.sender": 0,
		"syscalls.to_target": 400, "syscalls.from_target": 800,
		"datagrams.to_target": 1000, "datagrams.from_target": 1000, "empty_reads": 100,
	}, c.DataPath, "counters only: gauges say nothing per datagram")

	d := newDataPath(c.DataPath, 1000)
	require.InDelta(t, 0.1, d.WakesPerDgram, 1e-9)
	require.Equal(t, map[string]float64{"worker": 0.05, "sender": 0.03, "poller": 0.02}, d.WakesBy)
	require.InDelta(t, 0.4, d.SyscallsToTargetPerDgram, 1e-9)
	require.InDelta(t, 0.8, d.SyscallsFromTargetPerDgram, 1e-9)
	require.InDelta(t, 0.1, d.EmptyReadsPerDgram, 1e-9)
	require.Equal(t, map[string]float64{"to_target": 2.5, "from_target": 1.25, "worker": 4}, d.Batch,
		"no sender batch: the sender ran none")

	res := Result{Transport: "masqroute", Mode: "closed", DataPath: d}
	var b strings.Builder
	require.NoError(t, res.WriteText(&b))
	for _, want := range []string{
		"data path (per datagram from clients, 1,000 of them):",
		"wakes/dgram               0.100  (poller 0.020, sender 0.030, worker 0.050)",
		"syscalls to targets       0.400  batch 2.50 dgrams per call",
		"syscalls from targets     0.800  batch 1.25 dgrams per call, empty reads 0.100",
		"worker turns                     batch 4.00 dgrams per turn",
		"sender batches                   batch -",
	} {
		require.Contains(t, b.String(), want)
	}

	require.Nil(t, newDataPath(nil, 1000), "not a masqroute proxy")
	require.Nil(t, newDataPath(c.DataPath, 0), "nothing went through")
}

// The in-process probe and the Prometheus one give the same keys.
func TestDataPathKeysMatchMetrics(t *testing.T) {
	keys := dataPathCounts(proxy.DataPathStats{})
	for _, series := range []struct {
		name   string
		labels map[string]string
	}{
		{"masqroute_datapath_wakeups_total", map[string]string{"goroutine": "worker"}},
		{"masqroute_datapath_batched_datagrams_total", map[string]string{"goroutine": "sender"}},
		{"masqroute_datapath_syscalls_total", map[string]string{"direction": "from_target"}},
		{"masqroute_datapath_gso_refusals_total", nil},
		{"masqroute_datapath_sender_queue_full_total", nil},
	} {
		require.Contains(t, keys, dataPathKey(series.name, series.labels), series.name)
	}
	require.Empty(t, dataPathKey("masqroute_datapath_workers", nil))
	require.Empty(t, dataPathKey("masqroute_datapath_worker_tunnels_placed_total", map[string]string{"worker": "0"}))
	require.Empty(t, dataPathKey("masqroute_datagrams_total", map[string]string{"direction": "to_target"}))
}

func TestDeltaKeepsDataPath(t *testing.T) {
	d := delta(Counters{DataPath: map[string]uint64{"a": 5, "b": 2}}, Counters{DataPath: map[string]uint64{"a": 9, "b": 2}})
	require.Equal(t, map[string]uint64{"a": 4, "b": 0}, d.DataPath)
}
