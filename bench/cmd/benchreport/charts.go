package main

import (
	"fmt"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// A Chart is an image written next to the markdown.
type Chart struct {
	File    string // relative to the markdown file
	Caption string
}

// The canvas is wider than the plot: the legend has a column of its own
// (chartstyle.go).
const chartW, chartH = 20 * vg.Centimeter, 10 * vg.Centimeter

// Charts draws the report's charts into dir/sub, in format ("svg" or
// "png"), and returns them with paths relative to dir.
func Charts(d *Data, dir, sub, format string) ([]Chart, error) {
	var out []Chart
	save := func(p *plot.Plot, name, caption string) error {
		name += "." + format
		if err := saveChart(p, chartW, chartH, filepath.Join(dir, sub, name), format); err != nil {
			return err
		}
		out = append(out, Chart{File: filepath.ToSlash(filepath.Join(sub, name)), Caption: caption})
		return nil
	}
	impls := d.Values("Dispatch", "impl", implOrder...)

	// ns/op against sessions, one chart per dispatcher count, no churn.
	for _, procs := range d.Procs("Dispatch") {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Dispatch, %s, churn=0", dispatchers(procs))
		p.X.Label.Text = "sessions"
		p.Y.Label.Text = "ns per Dispatch call"
		var lines []any
		var all plotter.XYs
		for _, impl := range impls {
			var xy plotter.XYs
			for _, sessions := range d.Values("Dispatch", "sessions") {
				n, err := strconv.ParseFloat(sessions, 64)
				if err != nil {
					continue
				}
				if v, ok := median(d, "Dispatch", procs, map[string]string{"impl": impl, "sessions": sessions, "churn": "0"}, "ns/op"); ok && v > 0 {
					xy = append(xy, plotter.XY{X: n, Y: v})
				}
			}
			if len(xy) > 0 {
				lines = append(lines, impl, xy)
				all = append(all, xy...)
			}
		}
		if len(lines) == 0 {
			continue
		}
		xlo, xhi, ylo, yhi := plotter.XYRange(all)
		logAxis(&p.X, xlo, xhi)
		logAxis(&p.Y, ylo, yhi)
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return nil, err
		}
		if err := save(p, fmt.Sprintf("dispatch-ns-cpu%d", procs),
			"ns per Dispatch call against sessions, "+dispatchers(procs)); err != nil {
			return nil, err
		}
	}

	// Throughput against dispatchers at 100k sessions, no churn.
	if procs := d.Procs("Dispatch"); len(procs) > 0 {
		p := plot.New()
		p.Title.Text = "Delivered datagrams/s at 100k sessions, churn=0"
		p.X.Label.Text = "dispatchers"
		p.Y.Label.Text = "million datagrams/s"
		var lines []any
		for _, impl := range impls {
			var xy plotter.XYs
			for _, n := range procs {
				if v, ok := median(d, "Dispatch", n, map[string]string{"impl": impl, "sessions": "100000", "churn": "0"}, "dgrams/s"); ok {
					xy = append(xy, plotter.XY{X: float64(n), Y: v / 1e6})
				}
			}
			if len(xy) > 0 {
				lines = append(lines, impl, xy)
			}
		}
		if len(lines) > 0 {
			if err := plotutil.AddLinePoints(p, lines...); err != nil {
				return nil, err
			}
			p.Y.Min = 0
			p.Y.Tick.Marker = linearTicks
			var xs []float64
			for _, n := range procs {
				xs = append(xs, float64(n))
			}
			valueAxis(&p.X, xs)
			if err := save(p, "dispatch-throughput-100k", "delivered datagrams/s against dispatchers, 100k sessions"); err != nil {
				return nil, err
			}
		}
	}

	// p99 latency with and without churn, one chart per dispatcher count.
	limpls := d.Values("Latency", "impl", implOrder...)
	for _, procs := range d.Procs("Latency") {
		p := plot.New()
		p.Title.Text = "p99 dispatch-to-consumer latency, " + dispatchers(procs)
		p.Y.Label.Text = "µs"
		w := vg.Points(14)
		drawn := false
		for i, churn := range []string{"0", "1"} {
			vals := make(plotter.Values, len(limpls))
			for j, impl := range limpls {
				if v, ok := median(d, "Latency", procs, map[string]string{"impl": impl, "churn": churn}, "p99-ns"); ok {
					vals[j] = v / 1e3
					drawn = true
				}
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			bars.Color = plotutil.Color(i)
			bars.LineStyle.Width = 0
			bars.Offset = vg.Length(2*i-1) * w / 2
			p.Add(bars)
			p.Legend.Add("churn="+churn, bars)
		}
		if !drawn {
			continue
		}
		p.Y.Tick.Marker = linearTicks
		p.NominalX(limpls...)
		if err := save(p, fmt.Sprintf("latency-p99-cpu%d", procs),
			"p99 latency with and without churn, "+dispatchers(procs)); err != nil {
			return nil, err
		}
	}
	if err := e2eCharts(d, save); err != nil {
		return nil, err
	}
	return out, nil
}

// e2eCharts draws BenchmarkE2E's charts: throughput against tunnels in a
// closed loop, p99 latency against tunnels in an open loop, one line per
// implementation and one chart per GOMAXPROCS.
func e2eCharts(d *Data, save func(p *plot.Plot, name, caption string) error) error {
	impls := d.Values("E2E", "impl", e2eImplOrder...)
	tunnelNames, tunnelValues := e2eTunnels(d)
	for _, procs := range d.Procs("E2E") {
		on, suffix := procsLabel(d, procs, ", GOMAXPROCS=%d"), procsLabel(d, procs, "-cpu%d")
		for _, c := range []struct {
			mode, metric, name, title, yLabel, caption string
			scale                                      float64
		}{
			{"closed", "dgrams/s", "e2e-throughput-closed", "End to end, closed loop (maximum load)", "thousand echo replies/s",
				"end-to-end throughput (dgrams/s) against tunnels, closed loop", 1e3},
			{"open", "p99-us", "e2e-p99-open", "End to end, open loop (fixed offered rate)", "p99 round-trip latency, ms",
				"end-to-end p99 latency against tunnels, open loop", 1e3},
		} {
			p := plot.New()
			p.Title.Text = c.title + on
			p.X.Label.Text = "tunnels"
			p.Y.Label.Text = c.yLabel
			var lines []any
			var all plotter.XYs
			for _, impl := range impls {
				var xy plotter.XYs
				for i, tunnels := range tunnelNames {
					if tunnelValues[i] <= 0 {
						continue // not a tunnel count a log axis can show
					}
					if v, ok := e2eMedian(d, procs, impl, tunnels, c.mode, c.metric); ok {
						xy = append(xy, plotter.XY{X: tunnelValues[i], Y: v / c.scale})
					}
				}
				if len(xy) > 0 {
					lines = append(lines, impl, xy)
					all = append(all, xy...)
				}
			}
			if len(lines) == 0 {
				continue
			}
			if err := plotutil.AddLinePoints(p, lines...); err != nil {
				return err
			}
			xlo, xhi, _, _ := plotter.XYRange(all)
			logAxis(&p.X, xlo, xhi)
			p.Y.Min = 0
			p.Y.Tick.Marker = linearTicks
			if err := save(p, c.name+suffix, c.caption+on); err != nil {
				return err
			}
		}
	}
	return nil
}
