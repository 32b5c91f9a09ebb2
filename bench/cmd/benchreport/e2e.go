package main

import (
	"fmt"
	"strconv"
	"strings"
)

// e2eImplOrder is the column order of the end-to-end tables: masqroute, the
// stock quic-go proxy it is measured against, raw QUIC (the ceiling).
var e2eImplOrder = []string{"masqroute", "baseline", "rawquic"}

// e2eModeOrder puts the maximum-load mode first.
var e2eModeOrder = []string{"closed", "open"}

// e2eModes describes BenchmarkE2E's modes.
var e2eModes = map[string]struct{ title, text string }{
	"closed": {"closed loop (maximum load)",
		"Each tunnel keeps a fixed window of datagrams in flight (loadgen.AutoWindow: 64 at 1 tunnel, 3 at 100, 1 at 1000) " +
			"and sends the next as soon as a reply comes back: dgrams/s is the throughput the implementation sustains."},
	"open": {"open loop (fixed offered rate)",
		"Datagrams are sent on schedule at a fixed rate over all tunnels together (-e2e.rate, 20,000/s by default; -e2e.rate1000, 10,000/s, at 1000 tunnels) " +
			"whatever comes back: dgrams/s should be the offered rate, and loss and latency tell the implementations apart."},
}

// e2eMetrics are the tables of each mode: metric, title, whether cells show
// the min–max range.
var e2eMetrics = []struct {
	metric, title string
	withRange     bool
}{
	{"dgrams/s", "echo replies received per second (higher is better)", true},
	{"loss-%", "loss, % of the datagrams sent in the measured interval (lower is better)", true},
	{"p99-us", "p99 round-trip latency, µs (lower is better)", true},
	{"proxy-cpu-us/rt", "proxy process CPU µs per round trip (lower is better)", true},
	{"proxy-syscalls/rt", "proxy process syscalls per round trip (lower is better)", true},
	{"proxy-ctxsw/rt", "proxy process context switches per round trip (lower is better)", true},
}

// e2eParams are the parameters of one BenchmarkE2E result.
func e2eParams(impl, tunnels, mode string) map[string]string {
	return map[string]string{"impl": impl, "tunnels": tunnels, "mode": mode}
}

// e2eMedian is the median of metric for impl at (procs, tunnels, mode).
func e2eMedian(d *Data, procs int, impl, tunnels, mode, metric string) (float64, bool) {
	return median(d, "E2E", procs, e2eParams(impl, tunnels, mode), metric)
}

// procsLabel is "" when BenchmarkE2E ran at one GOMAXPROCS only, else a
// label for procs.
func procsLabel(d *Data, procs int, format string) string {
	if len(d.Procs("E2E")) < 2 {
		return ""
	}
	return fmt.Sprintf(format, procs)
}

// e2eSection writes the "End to end" section: per mode, a table per metric
// (rows: tunnels; columns: implementations), the ratios, and the targets.
func e2eSection(b *strings.Builder, d *Data) {
	impls := d.Values("E2E", "impl", e2eImplOrder...)
	b.WriteString("## End to end (BenchmarkE2E)\n\n" +
		"Real QUIC connections on loopback: the proxy in a process of its own pinned to one CPU; the load generator, " +
		"masqroute's client and a UDP echo target in another, pinned to a second CPU. `masqroute` is masqroute's proxy; `baseline` a proxy " +
		"on quic-go's stock `http3.Server` (same client); `rawquic` raw QUIC datagrams echoed on the connection " +
		"(no HTTP/3, no proxy, no UDP hop: the ceiling). Datagrams are 1200 bytes; a tunnel is one CONNECT-UDP " +
		"request (for rawquic, a label on its datagrams); the tunnels share one connection unless -e2e.conns says otherwise. Each cell is the median of the runs of that point (min–max in parentheses).\n\n")
	for _, procs := range d.Procs("E2E") {
		on := procsLabel(d, procs, ", GOMAXPROCS=%d")
		for _, mode := range d.Values("E2E", "mode", e2eModeOrder...) {
			title, text := mode, ""
			if m, ok := e2eModes[mode]; ok {
				title, text = m.title, m.text+"\n\n"
			}
			fmt.Fprintf(b, "### %s%s\n\n%s", strings.ToUpper(title[:1])+title[1:], on, text)
			for _, m := range e2eMetrics {
				var rows [][]string
				for _, tunnels := range d.Values("E2E", "tunnels") {
					row := []string{tunnels}
					any := false
					for _, impl := range impls {
						s, ok := Summarize(d.Find("E2E", procs, e2eParams(impl, tunnels, mode)), m.metric)
						if !ok {
							row = append(row, "–")
							continue
						}
						any = true
						row = append(row, fmtSummary(s, m.withRange))
					}
					if any {
						rows = append(rows, row)
					}
				}
				if len(rows) == 0 {
					continue
				}
				fmt.Fprintf(b, "#### %s, %s%s\n\n", m.title, mode, on)
				table(b, append([]string{"tunnels"}, impls...), rows)
			}
			if rows := e2eRatios(d, procs, mode); len(rows) > 0 {
				fmt.Fprintf(b, "#### Ratios of the medians, %s%s\n\n", mode, on)
				table(b, []string{"tunnels", "masqroute / baseline dgrams/s", "masqroute / rawquic dgrams/s", "baseline / masqroute p99"}, rows)
			}
		}
	}
	b.WriteString("### Targets (end to end)\n\n")
	writeTargets(b, E2ETargets(d))
}

// e2eRatios is the ratios table of mode: per tunnel count, masqroute's
// dgrams/s over baseline's and over rawquic's (the fraction of the
// ceiling), and baseline's p99 over masqroute's (above 1: masqroute's tail
// is shorter). Rows with no ratio at all are left out.
func e2eRatios(d *Data, procs int, mode string) [][]string {
	var rows [][]string
	for _, tunnels := range d.Values("E2E", "tunnels") {
		ratio := func(numImpl, denImpl, metric string) (string, bool) {
			n, ok1 := e2eMedian(d, procs, numImpl, tunnels, mode, metric)
			dd, ok2 := e2eMedian(d, procs, denImpl, tunnels, mode, metric)
			if !ok1 || !ok2 || dd == 0 {
				return "–", false
			}
			return fmt.Sprintf("%.2f", n/dd), true
		}
		mb, ok1 := ratio("masqroute", "baseline", "dgrams/s")
		mr, ok2 := ratio("masqroute", "rawquic", "dgrams/s")
		bm, ok3 := ratio("baseline", "masqroute", "p99-us")
		if ok1 || ok2 || ok3 {
			rows = append(rows, []string{tunnels, mb, mr, bm})
		}
	}
	return rows
}

// The end-to-end targets.
const (
	e2eTargetThroughput = "masqroute ≥ 1.5× baseline dgrams/s at maximum load (closed) at every tunnel count"
	e2eTargetOpen       = "at the same offered rate (open) masqroute loses fewer datagrams and has lower p99 than baseline"
)

// E2ETargets checks the end-to-end targets against the medians of d.
func E2ETargets(d *Data) []Target {
	var out []Target

	// 1. Throughput at maximum load.
	t := Target{Name: e2eTargetThroughput}
	var parts []string
	okAll, any := true, false
	for _, procs := range d.Procs("E2E") {
		on := procsLabel(d, procs, "GOMAXPROCS=%d, ")
		for _, tunnels := range d.Values("E2E", "tunnels") {
			m, ok1 := e2eMedian(d, procs, "masqroute", tunnels, "closed", "dgrams/s")
			bl, ok2 := e2eMedian(d, procs, "baseline", tunnels, "closed", "dgrams/s")
			if !ok1 || !ok2 || bl == 0 {
				continue
			}
			any = true
			ok := m >= 1.5*bl
			okAll = okAll && ok
			parts = append(parts, fmt.Sprintf("%stunnels=%s: %s / %s dgrams/s = ×%.2f%s",
				on, tunnels, fmtValue(m), fmtValue(bl), m/bl, failMark(ok, "")))
		}
	}
	t.Verdict, t.Detail = verdictOf(any, okAll), first(strings.Join(parts, "; "), "no closed-loop results of both masqroute and baseline")
	out = append(out, t)

	// 2. Loss and tail latency at a fixed offered rate. Losing nothing when
	// the baseline loses nothing either counts as "fewer".
	t = Target{Name: e2eTargetOpen}
	parts, okAll, any = nil, true, false
	for _, procs := range d.Procs("E2E") {
		on := procsLabel(d, procs, "GOMAXPROCS=%d, ")
		for _, tunnels := range d.Values("E2E", "tunnels") {
			mLoss, ok1 := e2eMedian(d, procs, "masqroute", tunnels, "open", "loss-%")
			bLoss, ok2 := e2eMedian(d, procs, "baseline", tunnels, "open", "loss-%")
			mP99, ok3 := e2eMedian(d, procs, "masqroute", tunnels, "open", "p99-us")
			bP99, ok4 := e2eMedian(d, procs, "baseline", tunnels, "open", "p99-us")
			if !ok1 || !ok2 || !ok3 || !ok4 {
				continue
			}
			any = true
			lossOK := mLoss < bLoss || (mLoss == 0 && bLoss == 0)
			p99OK := mP99 < bP99
			okAll = okAll && lossOK && p99OK
			var failed []string
			if !lossOK {
				failed = append(failed, "loss")
			}
			if !p99OK {
				failed = append(failed, "p99")
			}
			parts = append(parts, fmt.Sprintf("%stunnels=%s: loss %s vs %s %%, p99 %s vs %s µs (baseline/masqroute ×%.2f)%s",
				on, tunnels, fmtValue(mLoss), fmtValue(bLoss), fmtValue(mP99), fmtValue(bP99), bP99/mP99,
				failMark(len(failed) == 0, strings.Join(failed, ", "))))
		}
	}
	t.Verdict, t.Detail = verdictOf(any, okAll), first(strings.Join(parts, "; "), "no open-loop results of both masqroute and baseline")
	if any {
		t.Detail = "masqroute vs baseline, " + t.Detail
	}
	out = append(out, t)
	return out
}

// failMark marks a failing point in a target's detail: " (fails)", or
// " (fails: what)".
func failMark(ok bool, what string) string {
	switch {
	case ok:
		return ""
	case what == "":
		return " (fails)"
	}
	return " (fails: " + what + ")"
}

// e2eTunnels are the tunnel counts of BenchmarkE2E as numbers, for charts.
func e2eTunnels(d *Data) (names []string, values []float64) {
	for _, t := range d.Values("E2E", "tunnels") {
		if v, err := strconv.ParseFloat(t, 64); err == nil && v > 0 {
			names, values = append(names, t), append(values, v)
		}
	}
	return names, values
}
