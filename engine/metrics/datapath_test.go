package metrics_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/metrics"
)

// The masqroute_datapath_* families: their types, lint-clean, and values
// that move when datagrams flow through a proxy on loopback.
func TestCollectorDataPath(t *testing.T) {
	tp := startProxy(t, 0)
	c := metrics.NewCollector(tp.proxy)
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)

	types := map[string]string{
		"masqroute_datapath_workers":                   "GAUGE",
		"masqroute_datapath_wakeups_total":             "COUNTER",
		"masqroute_datapath_batches_total":             "COUNTER",
		"masqroute_datapath_batched_datagrams_total":   "COUNTER",
		"masqroute_datapath_sender_queue_full_total":   "COUNTER",
		"masqroute_datapath_poller_events_total":       "COUNTER",
		"masqroute_datapath_poller_requeues_total":     "COUNTER",
		"masqroute_datapath_syscalls_total":            "COUNTER",
		"masqroute_datapath_datagrams_total":           "COUNTER",
		"masqroute_datapath_empty_reads_total":         "COUNTER",
		"masqroute_datapath_gso_sends_total":           "COUNTER",
		"masqroute_datapath_gso_datagrams_total":       "COUNTER",
		"masqroute_datapath_gso_refusals_total":        "COUNTER",
		"masqroute_datapath_gso_disabled":              "GAUGE",
		"masqroute_datapath_client_flushes_total":      "COUNTER",
		"masqroute_datapath_client_gso_sends_total":    "COUNTER",
		"masqroute_datapath_client_gso_packets_total":  "COUNTER",
		"masqroute_datapath_client_send_drops_total":   "COUNTER",
		"masqroute_datapath_client_gso_refusals_total": "COUNTER",
	}
	fams := gather(t, c)
	for name, typ := range types {
		require.Contains(t, fams, name)
		require.Equal(t, typ, fams[name].GetType().String(), name)
	}
	// The labels a scraper (and bench/e2e) sees.
	for _, g := range []string{"worker", "sender", "poller"} {
		value(t, fams, "masqroute_datapath_wakeups_total", "goroutine="+g)
		value(t, fams, "masqroute_datapath_batches_total", "goroutine="+g)
	}
	for _, d := range []string{"to_target", "from_target", "to_client"} {
		value(t, fams, "masqroute_datapath_syscalls_total", "direction="+d)
		value(t, fams, "masqroute_datapath_datagrams_total", "direction="+d)
	}
	require.Zero(t, value(t, fams, "masqroute_datapath_workers"), "no executor before the first connection")

	conn := tp.dial(t)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := conn.DialUDP(ctx, tp.echo.Addr().String())
	require.NoError(t, err)
	defer u.Close()
	const echoes = 5
	for i := range echoes {
		// One at a time: each waits for its echo, so the worker parks
		// between them and a datagram wakes it.
		echoOnce(t, u, fmt.Appendf(nil, "datagram %d", i))
	}

	// A worker adds its batch to the counters after the batch's handler
	// returns, which can be after the last echo reached the client.
	require.Eventually(t, func() bool {
		fams = gather(t, c)
		return value(t, fams, "masqroute_datapath_batched_datagrams_total", "goroutine=worker") >= echoes
	}, 5*time.Second, time.Millisecond, "the worker's batches count every datagram")
	require.Equal(t, float64(engine.DefaultWorkers()), value(t, fams, "masqroute_datapath_workers"))
	require.GreaterOrEqual(t, value(t, fams, "masqroute_datapath_wakeups_total", "goroutine=worker"), 1.0)
	// The one tunnel was placed on the first worker (round-robin), and
	// every worker has its series.
	require.Equal(t, "COUNTER", fams["masqroute_datapath_worker_tunnels_placed_total"].GetType().String())
	require.Len(t, fams["masqroute_datapath_worker_tunnels_placed_total"].GetMetric(), engine.DefaultWorkers())
	require.Equal(t, 1.0, value(t, fams, "masqroute_datapath_worker_tunnels_placed_total", "worker=0"))
	workerBatches := value(t, fams, "masqroute_datapath_batches_total", "goroutine=worker")
	require.GreaterOrEqual(t, workerBatches, 1.0)
	require.GreaterOrEqual(t, value(t, fams, "masqroute_datapath_batched_datagrams_total", "goroutine=worker"), float64(echoes))
	// The tunnel's first datagram (ticket 0 of its ring) is a queue-delay
	// sample; the next is 256 datagrams later.
	qd := fams["masqroute_router_queue_delay_seconds"]
	require.NotNil(t, qd)
	require.Equal(t, "HISTOGRAM", qd.GetType().String())
	h := qd.GetMetric()[0].GetHistogram()
	require.Equal(t, uint64(1), h.GetSampleCount())
	require.Greater(t, h.GetSampleSum(), 0.0)
	require.Less(t, h.GetSampleSum(), 5.0)
	require.Len(t, h.GetBucket(), len(engine.QueueDelayBounds()))
	require.Equal(t, uint64(1), h.GetBucket()[len(h.GetBucket())-1].GetCumulativeCount())
	problems, err = testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)
	if runtime.GOOS != "linux" {
		return // the socket counters count the Linux data path
	}
	toTarget := value(t, fams, "masqroute_datapath_datagrams_total", "direction=to_target")
	require.GreaterOrEqual(t, toTarget, float64(echoes))
	writes := value(t, fams, "masqroute_datapath_syscalls_total", "direction=to_target")
	require.GreaterOrEqual(t, writes, 1.0)
	require.LessOrEqual(t, writes, toTarget+value(t, fams, "masqroute_datapath_gso_refusals_total"),
		"a write carries one datagram or more (a refused GSO send is made again)")
	require.GreaterOrEqual(t, value(t, fams, "masqroute_datapath_datagrams_total", "direction=from_target"), float64(echoes))
	require.GreaterOrEqual(t, value(t, fams, "masqroute_datapath_syscalls_total", "direction=from_target"), 1.0)
}
