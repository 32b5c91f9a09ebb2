package metrics

import (
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

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
	st := proxy.Stats{Rejected: map[int]uint64{403: 2, 0: 1, 429: 3, 418: 4}}
	got := map[string]float64{}
	var order []string
	rejectedByStatus(&st, func(v float64, lvs ...string) {
		require.Len(t, lvs, 1)
		got[lvs[0]] = v
		order = append(order, lvs[0])
	})
	require.Equal(t, []string{"400", "401", "403", "404", "405", "407", "500", "501", "502", "503", "418", "429", "other"}, order)
	require.Equal(t, 2.0, got["403"])
	require.Equal(t, 4.0, got["418"])
	require.Equal(t, 3.0, got["429"])
	require.Equal(t, 1.0, got["other"])
	require.Zero(t, got["502"])
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
	st.Rejected = map[int]uint64{403: uint64(next)}
	want[next] = "Rejected[403]"
	next++
	st.TunnelsByProtocol = map[string]int64{"connect-ip": int64(next)}
	want[next] = "TunnelsByProtocol[connect-ip]"
	next++
	st.OpenedByProtocol = map[string]uint64{"connect-ip": uint64(next)}
	want[next] = "OpenedByProtocol[connect-ip]"
	next++
	st.AuthRefused = map[string]uint64{"token_invalid": uint64(next)}
	want[next] = "AuthRefused[token_invalid]"

	got := map[float64]bool{}
	for _, f := range families() {
		f.read(&st, func(v float64, _ ...string) { got[v] = true })
	}
	for v, name := range want {
		require.True(t, got[v], "proxy.Stats.%s is in no metric", name)
	}
	require.Equal(t, []string{"Rejected", "AuthRefused", "Router", "DataPath", "TunnelsByProtocol", "OpenedByProtocol"}, skipped,
		"fields of a kind this test does not fill")
}
