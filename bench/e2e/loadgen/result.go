package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one run measured. Counts are over the measured interval:
// datagrams whose send time lies in it, and their replies that came back
// before the drain ended.
type Result struct {
	Transport   string  `json:"transport"`
	Target      string  `json:"target,omitempty"`
	Mode        string  `json:"mode"` // "open" (fixed offered rate) or "closed" (window per tunnel)
	Tunnels     int     `json:"tunnels"`
	Conns       int     `json:"conns"`
	Size        int     `json:"size_bytes"`
	Window      int     `json:"window,omitempty"`       // closed loop
	OfferedRate float64 `json:"offered_rate,omitempty"` // open loop, datagrams/s

	Duration   float64 `json:"duration_s"`
	Sent       uint64  `json:"sent"`
	Received   uint64  `json:"received"`
	Lost       uint64  `json:"lost"`
	LossPct    float64 `json:"loss_pct"`
	SendErrors uint64  `json:"send_errors"` // sends the transport refused (not in Sent)
	Stray      uint64  `json:"stray"`       // replies that were not this run's
	// LossTimeouts (closed loop) counts the times a tunnel gave up
	// waiting and wrote its window off; a late reply after one lets a
	// tunnel briefly have more than Window in flight.
	LossTimeouts uint64 `json:"loss_timeouts,omitempty"`

	SentRate float64 `json:"sent_per_s"`     // datagrams/s
	RecvRate float64 `json:"received_per_s"` // datagrams/s
	MbitOut  float64 `json:"mbit_out"`       // payload Mbit/s toward the target
	MbitIn   float64 `json:"mbit_in"`        // payload Mbit/s back

	// Latency is the round trip of measured replies, in microseconds.
	Latency Latency `json:"latency_us"`
	// SendLag (open loop) is how late the pacers sent, in microseconds:
	// it is part of Latency, since datagrams are stamped when they were
	// due.
	SendLag *Latency `json:"send_lag_us,omitempty"`

	// Hops are counts along the path over the measured interval and the
	// drain (the counters of the probes at both ends); consecutive hops
	// differ by what was lost, or still in flight at either end, between
	// them.
	Hops []Hop `json:"hops"`
	// Drops are the probes' drop counters over the same span, by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// DataPath is what each datagram cost a masqroute proxy in wake-ups,
	// system calls and batches, over the same span; nil without a probe
	// of its counters (PrometheusProbe, ProxyProbe).
	DataPath *DataPath `json:"data_path,omitempty"`
}

// Latency summarizes a histogram, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}

func mergeShards(shards []histShard) *hdrhistogram.Histogram {
	all := newLatencyHist()
	for i := range shards {
		shards[i].mu.Lock()
		all.Merge(shards[i].h)
		shards[i].mu.Unlock()
	}
	return all
}

func (r *run) result(measured time.Duration, path Counters) Result {
	c := r.cfg
	res := Result{
		Transport: c.Transport.Name(),
		Target:    c.Target,
		Mode:      c.Mode(),
		Tunnels:   c.Tunnels,
		Conns:     c.Conns,
		Size:      c.Size,
		Duration:  measured.Seconds(),
		Stray:     r.stray.Load(),
		Hops:      path.Hops,
		Drops:     path.Drops,
	}
	for _, h := range path.Hops {
		if h.Stage == StageProxyIn {
			res.DataPath = newDataPath(path.DataPath, h.Count)
		}
	}
	if c.Rate > 0 {
		res.OfferedRate = c.Rate
	} else {
		res.Window = c.Window
	}
	for i := range r.tunnels {
		res.Sent += r.tunnels[i].sentWin.Load()
		res.Received += r.tunnels[i].recvWin.Load()
	}
	res.SendErrors = r.sendErr.Load()
	res.LossTimeouts = r.timeout.Load()
	// The generator's own hops are the summary's counts, so that the path
	// starts and ends where the summary does.
	for i, h := range res.Hops {
		switch h.Stage {
		case StageSent:
			res.Hops[i].Count = res.Sent
		case StageReceived:
			res.Hops[i].Count = res.Received
		}
	}
	res.Lost = res.Sent - min(res.Sent, res.Received)
	if res.Sent > 0 {
		res.LossPct = 100 * float64(res.Lost) / float64(res.Sent)
	}
	if secs := res.Duration; secs > 0 {
		res.SentRate = float64(res.Sent) / secs
		res.RecvRate = float64(res.Received) / secs
		res.MbitOut = res.SentRate * float64(c.Size) * 8 / 1e6
		res.MbitIn = res.RecvRate * float64(c.Size) * 8 / 1e6
	}
	res.Latency = summarize(mergeShards(r.rtt))
	if len(r.lag) > 0 {
		all := newLatencyHist()
		for _, s := range r.lag {
			all.Merge(s.h)
		}
		l := summarize(all)
		res.SendLag = &l
	}
	return res
}

// WriteText writes res for people: the load, the totals, the latency, and
// the path hop by hop.
func (res *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	load := fmt.Sprintf("closed loop, window %d per tunnel", res.Window)
	if res.Mode == "open" {
		load = fmt.Sprintf("open loop, %s dgrams/s offered", grouped(uint64(res.OfferedRate)))
	}
	target := ""
	if res.Target != "" {
		target = " → " + res.Target
	}
	fmt.Fprintf(&b, "%s%s: %s over %s, %d-byte payloads, %s\n",
		res.Transport, target, plural(res.Tunnels, "tunnel"), plural(res.Conns, "connection"), res.Size, load)
	fmt.Fprintf(&b, "measured %.2fs\n", res.Duration)
	fmt.Fprintf(&b, "  sent      %13s  %12s dgrams/s  %9.1f Mbit/s\n", grouped(res.Sent), grouped(uint64(res.SentRate)), res.MbitOut)
	fmt.Fprintf(&b, "  received  %13s  %12s dgrams/s  %9.1f Mbit/s\n", grouped(res.Received), grouped(uint64(res.RecvRate)), res.MbitIn)
	fmt.Fprintf(&b, "  lost      %13s  %11.3f%%\n", grouped(res.Lost), res.LossPct)
	if res.SendErrors > 0 || res.Stray > 0 || res.LossTimeouts > 0 {
		fmt.Fprintf(&b, "  send errors %s, stray replies %s, loss timeouts %s\n",
			grouped(res.SendErrors), grouped(res.Stray), grouped(res.LossTimeouts))
	}
	l := res.Latency
	fmt.Fprintf(&b, "latency    p50 %s  p99 %s  p99.9 %s  max %s  (mean %s, %s samples)\n",
		us(l.P50), us(l.P99), us(l.P999), us(l.Max), us(l.Mean), grouped(uint64(l.Count)))
	if s := res.SendLag; s != nil {
		fmt.Fprintf(&b, "send lag   p50 %s  p99 %s  max %s  (pacer behind schedule; included in latency)\n",
			us(s.P50), us(s.P99), us(s.Max))
	}
	if res.Lost > 0 && !res.hasProxyHops() {
		b.WriteString("where the lost datagrams went missing is not known: give -metrics (the proxy's /metrics URL) to count them hop by hop\n")
	}
	if len(res.Hops) > 0 {
		b.WriteString("path (generator: the counts above; the others: their counters over the measured interval and the drain,\n" +
			"so they include what was in flight when the interval began):\n")
		var prev uint64
		for i, h := range res.Hops {
			diff := ""
			if i > 0 && h.Count != prev {
				diff = fmt.Sprintf("%+d", int64(h.Count)-int64(prev))
			}
			fmt.Fprintf(&b, "  %-34s %13s  %s\n", h.Name, grouped(h.Count), diff)
			prev = h.Count
		}
	}
	if len(res.Drops) > 0 {
		b.WriteString("drops:\n")
		for _, k := range slices.Sorted(maps.Keys(res.Drops)) {
			fmt.Fprintf(&b, "  %-34s %13s\n", k, grouped(res.Drops[k]))
		}
	}
	if res.DataPath != nil {
		res.DataPath.writeText(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// us formats microseconds.
func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	default:
		return fmt.Sprintf("%.0fµs", v)
	}
}

// grouped formats n with thousands separators.
func grouped(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// hasProxyHops reports whether the path has a proxy's counts, which place a
// loss between the generator's two ends.
func (res *Result) hasProxyHops() bool {
	for _, h := range res.Hops {
		if h.Stage > StageSent && h.Stage < StageClientIn {
			return true
		}
	}
	return false
}

// plural is "1 tunnel", "2 tunnels".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
