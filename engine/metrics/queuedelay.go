package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqroute/masqroute/engine"
)

// queueDelayDesc is masqroute_router_queue_delay_seconds.
var queueDelayDesc = newDesc("router_queue_delay_seconds",
	"Time a client-to-target datagram waited in its tunnel's ring, from dispatch to the executor turn that hands it "+
		"to the tunnel; sampled, one datagram in max(64, 2 x ring size) per tunnel.")

// queueDelayHistogram is the executor's sampled queue delays as a
// Prometheus histogram (cumulative buckets, in seconds).
func queueDelayHistogram(q *engine.QueueDelay) prometheus.Metric {
	bounds := engine.QueueDelayBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += q.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(queueDelayDesc, q.Count(), q.Sum.Seconds(), buckets)
}
