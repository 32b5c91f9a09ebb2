package metrics

import (
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/proxy"
)

func TestCounterFloorNeverGoesBack(t *testing.T) {
	fl := make(counterFloor)
	a := prometheus.NewDesc("a_total", "a", []string{"l"}, nil)
	b := prometheus.NewDesc("b_total", "b", nil, nil)
	require.Equal(t, 5.0, fl.raise(a, []string{"x"}, 5))
	require.Equal(t, 5.0, fl.raise(a, []string{"x"}, 4), "a lower read keeps the floor")
	require.Equal(t, 7.0, fl.raise(a, []string{"x"}, 7))
	require.Equal(t, 1.0, fl.raise(a, []string{"y"}, 1), "series are separate")
	require.Equal(t, 2.0, fl.raise(b, nil, 2), "families are separate")
}

func TestRejectedByStatusLabels(t *testing.T) {
	st := proxy.Stats{Rejected: map[int]uint64{403: 2, 0: 1, 429: 3, 418: 4, 502: 7},
		RefusedPolicy: 1, FailedDNS: 2, FailedDial: 3}
	got := map[string]float64{}
	var order []string
	rejectedByStatus(&st, func(v float64, lvs ...string) {
		require.Len(t, lvs, 2)
		got[lvs[0]+"/"+lvs[1]] = v
		order = append(order, lvs[0]+"/"+lvs[1])
	})
	require.Equal(t, []string{"400/other", "401/other", "403/policy", "403/other", "404/other", "405/other", "407/other",
		"500/other", "501/other", "502/dns", "502/dial", "502/other", "503/other", "418/other", "429/other", "other/other"}, order)
	require.Equal(t, 1.0, got["403/policy"])
	require.Equal(t, 1.0, got["403/other"])
	require.Equal(t, 4.0, got["418/other"])
	require.Equal(t, 3.0, got["429/other"])
	require.Equal(t, 1.0, got["other/other"])
	require.Equal(t, 2.0, got["502/dns"])
	require.Equal(t, 3.0, got["502/dial"])
	require.Equal(t, 2.0, got["502/other"])
	require.Zero(t, got["400/other"])

	// A part read ahead of its total leaves the remainder at 0, never below.
	st = proxy.Stats{Rejected: map[int]uint64{403: 1}, RefusedPolicy: 2}
	rejectedByStatus(&st, func(v float64, lvs ...string) { require.GreaterOrEqual(t, v, 0.0) })
}

// TestEveryStatIsExposed fails when proxy.Stats or engine.Stats gains a
// field that no metric reads: each field gets a distinct value, and each
// value must come out of some series.
func TestEveryStatIsExposed(t *testing.T) {
	var st proxy.Stats
	want := map[float64]string{}
	next := 1000.0
	var skipped []string
	fill := func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			f := v.Field(i)
			name := prefix + v.Type().Field(i).Name
			switch f.Kind() {
			case reflect.Uint64:
				f.SetUint(uint64(next))
			case reflect.Int64, reflect.Int:
				f.SetInt(int64(next))
			case reflect.Bool: // a 0/1 gauge: no other field reads 1
				f.SetBool(true)
				want[1] = name
				continue
			default:
				skipped = append(skipped, name)
				continue
			}
			want[next] = name
			next++
		}
	}
	fill(reflect.ValueOf(&st).Elem(), "")
	fill(reflect.ValueOf(&st.Router).Elem(), "Router.")
	fill(reflect.ValueOf(&st.DataPath).Elem(), "DataPath.")
	fill(reflect.ValueOf(&st.TCP).Elem(), "TCP.")
	fill(reflect.ValueOf(&st.Bind).Elem(), "Bind.")
	// 400: a status whose total is not split by reason (403 and 502 are,
	// into RefusedPolicy, FailedDNS, FailedDial and the rest).
	st.Rejected = map[int]uint64{400: uint64(next)}
	want[next] = "Rejected[400]"
	next++
	st.TunnelsByProtocol = map[string]int64{"connect-ip": int64(next)}
	want[next] = "TunnelsByProtocol[connect-ip]"
	next++
	st.OpenedByProtocol = map[string]uint64{"connect-ip": uint64(next)}
	want[next] = "OpenedByProtocol[connect-ip]"
	next++
	st.AuthRefused = map[string]uint64{"token_invalid": uint64(next)}
	want[next] = "AuthRefused[token_invalid]"
	next++
	st.DataPath.WorkerPlaced = []uint64{0, uint64(next)}
	want[next] = "DataPath.WorkerPlaced[1]"

	got := map[float64]bool{}
	for _, f := range families() {
		f.read(&st, func(v float64, _ ...string) { got[v] = true })
	}
	for v, name := range want {
		if name == "TunnelsOpened" {
			continue // the sum of OpenedByProtocol, exposed by kind
		}
		require.True(t, got[v], "proxy.Stats.%s is in no metric", name)
	}
	require.Equal(t, []string{"Rejected", "AuthRefused", "Router", "DataPath", "TunnelsByProtocol", "OpenedByProtocol", "TCP", "Bind", "DataPath.WorkerPlaced", "DataPath.QueueDelay"}, skipped,
		"fields of a kind this test does not fill")

	// DataPath.QueueDelay is a histogram of its own: every count reaches it.
	st.DataPath.QueueDelay.Counts[0], st.DataPath.QueueDelay.Counts[queueDelayLast] = 3, 4
	st.DataPath.QueueDelay.Sum = 2 * time.Second
	var m dto.Metric
	require.NoError(t, queueDelayHistogram(&st.DataPath.QueueDelay).Write(&m))
	require.Equal(t, uint64(7), m.GetHistogram().GetSampleCount(), "the overflow bucket counts in the total")
	require.Equal(t, 2.0, m.GetHistogram().GetSampleSum())
	require.Equal(t, uint64(3), m.GetHistogram().GetBucket()[0].GetCumulativeCount())
}

// queueDelayLast is the index of the overflow bucket.
var queueDelayLast = len(engine.QueueDelayBounds())
