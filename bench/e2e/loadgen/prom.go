package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// PrometheusProbe scrapes a masqroute proxy's Prometheus endpoint (url,
// e.g. "http://127.0.0.1:9464/metrics") for the counters along the path and
// its drop reasons. A nil client is http.DefaultClient.
func PrometheusProbe(url string, client *http.Client) Probe {
	if client == nil {
		client = http.DefaultClient
	}
	return ProbeFunc(func(ctx context.Context) (Counters, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Counters{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return Counters{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Counters{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
		}
		return parseProxyMetrics(io.LimitReader(resp.Body, 16<<20))
	})
}

// parseProxyMetrics reads masqroute's counters from the Prometheus text
// format (parsed by expfmt): the hops, the drops and every
// masqroute_datapath_* counter. A missing series reads 0; a family of
// another type (a histogram, say) is skipped.
func parseProxyMetrics(r io.Reader) (Counters, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Counters{}, fmt.Errorf("parse metrics: %w", err)
	}
	var dispatched, delivered, toTarget, toClient uint64
	drops := make(map[string]uint64)
	var dataPath map[string]uint64
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			value, ok := sampleValue(m)
			if !ok {
				continue
			}
			labels := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch name {
			case "masqroute_router_dispatched_total":
				dispatched = value
			case "masqroute_router_delivered_total":
				delivered = value
			case "masqroute_datagrams_total":
				switch labels["direction"] {
				case "to_target":
					toTarget = value
				case "to_client":
					toClient = value
				}
			case "masqroute_datagrams_dropped_total":
				if reason := labels["reason"]; reason != "" {
					drops["proxy."+reason] = value
				}
			default:
				if key := dataPathKey(name, labels); key != "" {
					if dataPath == nil {
						dataPath = make(map[string]uint64)
					}
					dataPath[key] = value
				}
			}
		}
	}
	return Counters{Hops: proxyHops(dispatched, delivered, toTarget, toClient), Drops: drops, DataPath: dataPath}, nil
}

// sampleValue is a counter's, gauge's or untyped sample's value as a
// count; false for other types and for values that are not counts.
func sampleValue(m *dto.Metric) (uint64, bool) {
	var f float64
	switch {
	case m.Counter != nil:
		f = m.GetCounter().GetValue()
	case m.Gauge != nil:
		f = m.GetGauge().GetValue()
	case m.Untyped != nil:
		f = m.GetUntyped().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(f) || f < 0 || math.IsInf(f, 0) {
		return 0, false
	}
	return uint64(f), true
}
