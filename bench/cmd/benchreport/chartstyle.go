package main

// How the charts look: count axes labelled 1, 10, 100, 1k, 10k, 100k, 1M
// (never "1e+06" beside "100000"), integer axes with a tick at each value
// measured and no other (no "1.5 dispatchers"), end labels inside the
// canvas, and the legend in a column of its own to the right of the plot,
// where it cannot cover a line.

import (
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// dispatchers is "1 dispatcher", "2 dispatchers".
func dispatchers(n int) string {
	if n == 1 {
		return "1 dispatcher"
	}
	return strconv.Itoa(n) + " dispatchers"
}

// countLabel writes a count compactly: 950, 1k, 2.5k, 100k, 1M.
func countLabel(v float64) string {
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.div {
			return strconv.FormatFloat(v/u.div, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// logCountTicks marks a log axis at every power of ten, labelled with
// countLabel, and at 2…9 times each, unlabelled.
var logCountTicks = plot.TickerFunc(func(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for p := math.Floor(math.Log10(min)); p <= math.Ceil(math.Log10(max)); p++ {
		base := math.Pow(10, p)
		for m := 1.0; m < 10; m++ {
			v := m * base
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = countLabel(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
})

// valueTicks marks an axis at exactly vs, labelled as integers.
func valueTicks(vs []float64) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ticks []plot.Tick
		for _, v := range vs {
			if v >= min && v <= max {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
			}
		}
		return ticks
	})
}

// linearTicks is the default ticker with every label in one format, as
// many decimals as the step between ticks needs (0.25, 0.50, not 0.5).
var linearTicks = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	step := math.Inf(1)
	last := math.NaN()
	for _, t := range ticks {
		if t.Label == "" {
			continue
		}
		if !math.IsNaN(last) {
			step = math.Min(step, t.Value-last)
		}
		last = t.Value
	}
	decimals := 0
	if !math.IsInf(step, 1) && step > 0 {
		decimals = max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
		if step*math.Pow10(decimals) != math.Round(step*math.Pow10(decimals)) {
			decimals++
		}
	}
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', decimals, 64)
		}
	}
	return ticks
})

// logAxis makes a a log axis of counts spanning [lo, hi] with room around
// the end points, so their labels stay inside the canvas.
func logAxis(a *plot.Axis, lo, hi float64) {
	a.Scale, a.Tick.Marker = plot.LogScale{}, logCountTicks
	a.Min, a.Max = lo/1.6, hi*1.6
}

// valueAxis makes an axis with a tick at each of vs and room at the ends.
func valueAxis(a *plot.Axis, vs []float64) {
	lo, hi := slicesMinMax(vs)
	pad := math.Max((hi-lo)*0.08, 0.3)
	a.Min, a.Max = lo-pad, hi+pad
	a.Tick.Marker = valueTicks(vs)
}

func slicesMinMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}

// saveChart writes p to path in format (svg or png), w × h, with its
// legend in a column to the right of the plot instead of over it.
func saveChart(p *plot.Plot, w, h vg.Length, path, format string) error {
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	legend := p.Legend
	p.Legend = plot.NewLegend() // drawn below, beside the plot
	legend.Top, legend.Left = true, true
	// Slack beyond the measured width: an SVG viewer may draw the text in
	// a wider font than the one measured here.
	legendW := legend.Rectangle(dc).Max.X - legend.Rectangle(dc).Min.X + 14*vg.Millimeter
	p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
	// Aligned with the top of the data area, below the title.
	title := p.Title.TextStyle.Height(p.Title.Text) + p.Title.Padding
	legend.Draw(draw.Crop(dc, w-legendW+4*vg.Millimeter, 0, 0, -title-4*vg.Millimeter))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
