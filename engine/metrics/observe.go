package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NewBuildInfo returns the masqroute_build_info gauge: always 1, with the
// binary's version, commit and Go version as labels (the usual way to put
// a build on a dashboard: join other series on it, or count versions
// across a fleet).
func NewBuildInfo(version, commit, goVersion string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; its labels are the running binary's version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": goVersion},
	})
	g.Set(1)
	return g
}

// setupBuckets span a tunnel setup from an address literal (tens of
// microseconds) to a DNS lookup that runs into its timeout (seconds).
var setupBuckets = prometheus.ExponentialBuckets(100e-6, 4, 9) // 100µs … 6.6s

// TunnelSetup is the masqroute_tunnel_setup_duration_seconds histogram:
// how long a tunnel's session start took (name resolution, target policy,
// socket), by kind and result. Pass its Observe as
// proxy.Config.Hooks.TunnelSetup and register it beside NewCollector.
type TunnelSetup struct {
	*prometheus.HistogramVec
}

// NewTunnelSetup returns an empty TunnelSetup histogram.
func NewTunnelSetup() *TunnelSetup {
	return &TunnelSetup{prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "tunnel_setup_duration_seconds",
		Help: "Time from a tunnel request's session start to its outcome (name resolution, target policy, socket), " +
			"by kind (:protocol) and result: opened, or refused.",
		Buckets: setupBuckets,
	}, []string{"kind", "result"})}
}

// Observe records one setup; it has the signature of
// proxy.Hooks.TunnelSetup.
func (s *TunnelSetup) Observe(kind string, d time.Duration, err error) {
	result := "opened"
	if err != nil {
		result = "refused"
	}
	s.WithLabelValues(kind, result).Observe(d.Seconds())
}
