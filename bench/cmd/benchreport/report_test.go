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

func parseFiles(t *testing.T, names ...string) *Data {
	t.Helper()
	var d Data
	for _, name := range names {
		f, err := os.Open(name)
		require.NoError(t, err)
		require.NoError(t, d.ParseNamed(name, f))
		f.Close()
	}
	return &d
}

func TestParseE2E(t *testing.T) {
	d := parseFiles(t, "testdata/e2e.txt")
	require.Equal(t, "def5678", d.Config["commit"])
	require.Equal(t, "1.03 3.86 4.56 1/84 4169", d.Config["loadavg-start"], "header lines are configuration lines")
	require.Len(t, d.Results, 12)
	require.Len(t, d.Inputs, 1)
	require.Equal(t, "e2e", d.Inputs[0].Kind())
	require.True(t, d.Has("E2E"))
	require.False(t, d.HasMicro())
	require.Equal(t, []int{2}, d.Procs("E2E"))
	require.Equal(t, []string{"1", "1000"}, d.Values("E2E", "tunnels"))
	require.Equal(t, []string{"masqroute", "baseline", "rawquic"}, d.Values("E2E", "impl", e2eImplOrder...))
	require.Equal(t, []string{"closed", "open"}, d.Values("E2E", "mode", e2eModeOrder...))

	s, ok := Summarize(d.Find("E2E", 2, e2eParams("masqroute", "1000", "closed")), "dgrams/s")
	require.True(t, ok)
	require.Equal(t, Summary{Median: 38630, Min: 33966, Max: 39236, N: 3}, s)
}

func TestE2ETargets(t *testing.T) {
	got := map[string]Target{}
	for _, tg := range E2ETargets(parseFiles(t, "testdata/e2e.txt")) {
		got[tg.Name] = tg
	}
	tp := got[e2eTargetThroughput]
	require.Equal(t, fails, tp.Verdict, "×1.07 and ×1.15")
	require.Equal(t, "tunnels=1: 42.5k / 39.8k dgrams/s = ×1.07 (fails); tunnels=1000: 38.6k / 33.6k dgrams/s = ×1.15 (fails)", tp.Detail)
	op := got[e2eTargetOpen]
	require.Equal(t, holds, op.Verdict)
	require.Equal(t, "masqroute vs baseline, tunnels=1: loss 0.0125 vs 0.86 %, p99 3498 vs 5057 µs (baseline/masqroute ×1.45); "+
		"tunnels=1000: loss 0.11 vs 0.48 %, p99 9236 vs 21.2k µs (baseline/masqroute ×2.30)", op.Detail)

	// Made-up numbers: enough throughput; equal loss (not "fewer" unless
	// both lose nothing) and a longer tail.
	var d Data
	require.NoError(t, d.Parse(strings.NewReader(`
BenchmarkE2E/impl=masqroute/tunnels=1/mode=closed-2  1  60000 dgrams/s
BenchmarkE2E/impl=baseline/tunnels=1/mode=closed-2   1  40000 dgrams/s
BenchmarkE2E/impl=masqroute/tunnels=1/mode=open-2    1  10000 dgrams/s  0 loss-%  900 p99-us
BenchmarkE2E/impl=baseline/tunnels=1/mode=open-2     1  10000 dgrams/s  0 loss-%  1000 p99-us
BenchmarkE2E/impl=masqroute/tunnels=100/mode=open-2  1  10000 dgrams/s  0.5 loss-%  2000 p99-us
BenchmarkE2E/impl=baseline/tunnels=100/mode=open-2   1  10000 dgrams/s  0.5 loss-%  1000 p99-us
`)))
	got = map[string]Target{}
	for _, tg := range E2ETargets(&d) {
		got[tg.Name] = tg
	}
	require.Equal(t, holds, got[e2eTargetThroughput].Verdict, "×1.5 is enough")
	require.Equal(t, fails, got[e2eTargetOpen].Verdict)
	require.Contains(t, got[e2eTargetOpen].Detail, "tunnels=1: loss 0 vs 0 %, p99 900 vs 1000 µs (baseline/masqroute ×1.11); ")
	require.Contains(t, got[e2eTargetOpen].Detail, "(baseline/masqroute ×0.50) (fails: loss, p99)")

	got = map[string]Target{}
	for _, tg := range E2ETargets(parseSample(t)) {
		got[tg.Name] = tg
	}
	require.Equal(t, notMeasure, got[e2eTargetThroughput].Verdict)
	require.Equal(t, notMeasure, got[e2eTargetOpen].Verdict)
}

func TestEnvLabels(t *testing.T) {
	d := parseFiles(t, "testdata/sample.txt", "testdata/e2e.txt")
	labels := inputLabels(d.Inputs)
	require.Equal(t, []string{"micro", "e2e"}, labels)
	plain := func(s string) string { return s }
	get := func(k string) func(map[string]string) string { return func(c map[string]string) string { return c[k] } }
	require.Equal(t, "micro: abc1234; e2e: def5678", perInput(d.Inputs, labels, get("commit"), "unknown", plain))
	require.Equal(t, "AMD EPYC", perInput(d.Inputs, labels, get("cpu"), "", plain), "the same in every input")
	require.Equal(t, "micro: 2", perInput(d.Inputs, labels, get("cores"), "", plain), "only micro says")
	require.Equal(t, "", perInput(d.Inputs, labels, get("nosuch"), "unknown", plain))

	// Two inputs of one kind are told apart by file name.
	d = parseFiles(t, "testdata/sample.txt", "testdata/e2e.txt", "testdata/e2e.txt")
	d.Inputs[2].Config["commit"] = "0123abc"
	labels = inputLabels(d.Inputs)
	require.Equal(t, []string{"micro", "e2e.txt", "e2e.txt"}, labels)
	require.Equal(t, "micro: abc1234; e2e.txt: def5678; e2e.txt: 0123abc", perInput(d.Inputs, labels, get("commit"), "unknown", plain))
	delete(d.Inputs[2].Config, "commit")
	require.Equal(t, "micro: abc1234; e2e.txt: def5678; e2e.txt: unknown", perInput(d.Inputs, labels, get("commit"), "unknown", plain))
}

func TestRunE2E(t *testing.T) {
	out := t.TempDir()
	require.NoError(t, run([]string{"-out", out, "-intro", "testdata/intro.md", "testdata/sample.txt", "testdata/e2e.txt"}))
	b, err := os.ReadFile(filepath.Join(out, "benchmarks.md"))
	require.NoError(t, err)
	md := string(b)
	for _, want := range []string{
		"# masqroute benchmarks\n",
		"| commit | micro: abc1234; e2e: def5678 |",
		"| command | micro: `go test -run '^$' -bench Dispatch\\|Latency -count 2 -cpu 1,2 ./bench/`; e2e: `make bench-e2e = go test -bench E2E -count 3 ./bench/e2e/` |",
		"| engine | e2e: commit ed571e7 (git archive;",
		"| runs per point | micro: 1–2; e2e: 2–3 |",
		"## End to end (BenchmarkE2E)",
		// closed loop, dgrams/s
		"| tunnels | masqroute | baseline | rawquic |\n|---|---|---|---|\n" +
			"| 1 | 42.5k (42k–43k) | 39.8k (39.2k–40.3k) | 44.2k (43.4k–44.9k) |\n" +
			"| 1000 | 38.6k (34k–39.2k) | 33.6k (33.5k–33.8k) | 57.4k (46.3k–68.6k) |\n",
		// open loop, loss and p99
		"| 1 | 0.0125 (0–0.025) | 0.86 (0.54–1.18) | 0 |\n",
		"| 1000 | 9236 (4514–14k) | 21.2k (16.3k–26.1k) | 6712 (5292–8131) |\n",
		// proxy-cpu-us/rt, closed (testdata: the old whole-process
		// cpu-us/dgram values under the new name)
		"| 1000 | 50.1 (48.5–57.4) | 57.8 (57.7–58) | 29.9 (27–32.7) |\n",
		"#### Ratios of the medians, closed\n\n" +
			"| tunnels | masqroute / baseline dgrams/s | masqroute / rawquic dgrams/s | baseline / masqroute p99 |\n|---|---|---|---|\n" +
			"| 1 | 1.07 | 0.96 | 0.60 |\n| 1000 | 1.15 | 0.67 | 1.15 |\n",
		"#### Ratios of the medians, open\n\n" +
			"| tunnels | masqroute / baseline dgrams/s | masqroute / rawquic dgrams/s | baseline / masqroute p99 |\n|---|---|---|---|\n" +
			"| 1 | 1.01 | 1.00 | 1.45 |\n| 1000 | 1.00 | 1.00 | 2.30 |\n",
		"- **fails** — " + e2eTargetThroughput + ": tunnels=1: 42.5k / 39.8k dgrams/s = ×1.07 (fails);",
		"- **holds** — " + e2eTargetOpen + ": masqroute vs baseline, tunnels=1:",
		"img/e2e-throughput-closed.svg", "img/e2e-p99-open.svg",
	} {
		require.Contains(t, md, want)
	}
	// Order: environment table, charts (at the top: pictures before
	// tables), intro, micro sections, micro targets, end to end (closed
	// before open, targets last).
	order := []string{"| runs left out |", "## Charts", "## Analysis\n\nHand-written intro", "## BenchmarkDispatch", "## Targets\n",
		"## End to end", "### Closed loop", "### Open loop", "### Targets (end to end)"}
	last := -1
	for _, s := range order {
		i := strings.Index(md, s)
		require.Greater(t, i, last, "%q out of place", s)
		last = i
	}
	require.Equal(t, 1, strings.Count(md, "Hand-written intro"))
	for _, img := range []string{"e2e-throughput-closed.svg", "e2e-p99-open.svg", "dispatch-ns-cpu2.svg"} {
		st, err := os.Stat(filepath.Join(out, "img", img))
		require.NoError(t, err)
		require.NotZero(t, st.Size())
	}

	// Only end-to-end input: no micro sections, no micro targets.
	out = t.TempDir()
	require.NoError(t, run([]string{"-out", out, "-commit", "fff0000", "testdata/e2e.txt"}))
	b, err = os.ReadFile(filepath.Join(out, "benchmarks.md"))
	require.NoError(t, err)
	md = string(b)
	require.True(t, strings.HasPrefix(md, "# masqroute end-to-end benchmarks\n"))
	require.Contains(t, md, "| commit | fff0000 |", "the flag wins")
	require.Contains(t, md, "| engine | commit ed571e7", "one input: no label")
	for _, absent := range []string{"## BenchmarkDispatch", "## BenchmarkLatency", "## Targets\n", "bench/doc.go", "dispatch-ns"} {
		require.NotContains(t, md, absent)
	}
	_, err = os.Stat(filepath.Join(out, "img", "dispatch-ns-cpu1.svg"))
	require.True(t, os.IsNotExist(err))

	// Only micro input: no end-to-end section or charts.
	out = t.TempDir()
	require.NoError(t, run([]string{"-out", out, "testdata/sample.txt"}))
	b, err = os.ReadFile(filepath.Join(out, "benchmarks.md"))
	require.NoError(t, err)
	md = string(b)
	require.True(t, strings.HasPrefix(md, "# masqroute micro-benchmarks\n"))
	require.Contains(t, md, "| commit | abc1234 |")
	for _, absent := range []string{"End to end", "e2e", "| engine | commit", "### garbage collections per second, churn=0"} {
		require.NotContains(t, md, absent)
	}

	require.Error(t, run([]string{"-out", t.TempDir(), "-intro", "testdata/nosuch.md", "testdata/e2e.txt"}))
}
