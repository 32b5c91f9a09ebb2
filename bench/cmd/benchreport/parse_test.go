package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseKeepsUnits: benchfmt reads ns/op as sec/op; the report keeps the
// unit and the value as written, and the median is the middle run's.
func TestParseKeepsUnits(t *testing.T) {
	var d Data
	require.NoError(t, d.Parse(strings.NewReader("cores: 2\n"+
		"BenchmarkDispatch/impl=engine/sessions=1/churn=0-2 100 40 ns/op 7 dgrams/s\n"+
		"BenchmarkDispatch/impl=engine/sessions=1/churn=0-2 100 50 ns/op 9 dgrams/s\n"+
		"BenchmarkDispatch/impl=engine/sessions=1/churn=0-2 100 45 ns/op 8 dgrams/s\n")))
	r := d.Find("Dispatch", 2, map[string]string{"impl": "engine", "sessions": "1", "churn": "0"})
	require.NotNil(t, r)
	s, ok := Summarize(r, "ns/op")
	require.True(t, ok)
	require.Equal(t, Summary{Median: 45, Min: 40, Max: 50, N: 3}, s)
	require.Equal(t, []float64{40, 50, 45}, r.Metrics["ns/op"], "Summarize sorts a copy")
	require.Equal(t, "2", d.Config["cores"])
	require.Error(t, (&Data{}).Parse(strings.NewReader("BenchmarkX 1 2\n")), "a value without a unit")
}

// FuzzParse: any input parses or fails, never panics.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/sample.txt", "testdata/e2e.txt"} {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		var d Data
		if d.Parse(strings.NewReader(in)) == nil {
			for _, r := range d.Results {
				for m := range r.Metrics {
					Summarize(r, m)
				}
			}
		}
	})
}
