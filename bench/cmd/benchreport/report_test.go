package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func parseSample(t *testing.T) *Data {
	t.Helper()
	f, err := os.Open("testdata/sample.txt")
	require.NoError(t, err)
	defer f.Close()
	var d Data
	require.NoError(t, d.Parse(f))
	return &d
}

func TestParse(t *testing.T) {
	d := parseSample(t)
	require.Equal(t, "AMD EPYC", d.Config["cpu"])
	require.Equal(t, "abc1234", d.Config["commit"])
	require.Len(t, d.Results, 8)

	r := d.Find("Dispatch", 2, map[string]string{"impl": "engine", "sessions": "100000", "churn": "0"})
	require.NotNil(t, r)
	s, ok := Summarize(r, "ns/op")
	require.True(t, ok)
	require.Equal(t, Summary{Median: 1000, Min: 800, Max: 1200, N: 2}, s)

	r = d.Find("Dispatch", 1, map[string]string{"impl": "singlerouter", "sessions": "1", "churn": "0"})
	require.NotNil(t, r, "no -N suffix means GOMAXPROCS=1")
	require.Equal(t, []int{1, 2}, d.Procs("Dispatch"))
	require.Equal(t, []string{"1", "100000", "1000000"}, d.Values("Dispatch", "sessions"))
	require.Equal(t, []string{"singlerouter", "engine"}, d.Values("Dispatch", "impl", implOrder...))
}

func TestTargets(t *testing.T) {
	got := map[string]Target{}
	for _, tg := range Targets(parseSample(t)) {
		got[tg.Name] = tg
	}
	require.Equal(t, fails, got["engine 0 allocs/op at every Dispatch point"].Verdict, "one run allocated")
	require.Equal(t, holds, got["100k sessions, 2 dispatchers: engine ns/op ≤ 1/4 of singlerouter"].Verdict, "1000/4200")
	require.Equal(t, holds, got["engine fastest (lowest median ns/op) at every (sessions, dispatchers, churn)"].Verdict)
	require.Equal(t, fails, got["engine at 1M sessions ≤ 3× its 1-session ns/op"].Verdict, "300 vs 45")
	require.Equal(t, fails, got["engine p99 latency with churn ≤ 1.5× without"].Verdict, "120000 vs 60000")
}

func TestDropRuns(t *testing.T) {
	d := parseSample(t)
	n := d.DropRuns(func(_ *Result, run map[string]float64) bool { return run["other-cpus"] > 0.5 })
	require.Equal(t, 1, n)
	s, ok := Summarize(d.Find("Dispatch", 1, map[string]string{"impl": "engine", "sessions": "1", "churn": "0"}), "ns/op")
	require.True(t, ok)
	require.Equal(t, Summary{Median: 40, Min: 40, Max: 40, N: 1}, s)
}

func TestRun(t *testing.T) {
	out := t.TempDir()
	require.NoError(t, run([]string{"-out", out, "-max-other", "0.25", "testdata/sample.txt"}))
	md, err := os.ReadFile(filepath.Join(out, "benchmarks.md"))
	require.NoError(t, err)
	for _, want := range []string{"abc1234", "go1.26.8", "AMD EPYC", "linux/amd64", "1000 (800–1200)", "img/dispatch-ns-cpu2.svg", "## Targets", "## BenchmarkDispatchBurst", `Dispatch\|Latency`, "runs left out | 0 of 12"} {
		require.True(t, strings.Contains(string(md), want), "report lacks %q", want)
	}
	for _, img := range []string{"dispatch-ns-cpu1.svg", "dispatch-ns-cpu2.svg", "dispatch-throughput-100k.svg", "latency-p99-cpu2.svg"} {
		st, err := os.Stat(filepath.Join(out, "img", img))
		require.NoError(t, err)
		require.NotZero(t, st.Size())
	}
}
