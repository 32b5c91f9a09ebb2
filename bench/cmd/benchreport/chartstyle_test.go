package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

func labels(ticks []plot.Tick) []string {
	var out []string
	for _, t := range ticks {
		if t.Label != "" {
			out = append(out, t.Label)
		}
	}
	return out
}

// TestTickLabels: one number format per axis — no 1e+06 beside 100000,
// no 1.5 dispatchers, no 0.5 beside 0.25.
func TestTickLabels(t *testing.T) {
	require.Equal(t, []string{"1", "10", "100", "1k", "10k", "100k", "1M"}, labels(logCountTicks.Ticks(0.6, 1.6e6)))
	require.Equal(t, []string{"1", "2"}, labels(valueTicks([]float64{1, 2}).Ticks(0.7, 2.3)))
	for _, l := range labels(linearTicks.Ticks(0, 0.75)) {
		require.Len(t, l, 4, "0.00, 0.25, 0.50, 0.75: %q", l)
	}
	require.Equal(t, "2.5k", countLabel(2500))
	require.Equal(t, "1 dispatcher", dispatchers(1))
	require.Equal(t, "2 dispatchers", dispatchers(2))
}

// TestSaveChartPNG renders a chart to PNG (as `make bench-report` can with
// -format png) and checks that the legend has its own column: no legend
// pixel inside the plot's data area on the right side.
func TestSaveChartPNG(t *testing.T) {
	p := plot.New()
	p.Title.Text = "test"
	require.NoError(t, plotutil.AddLinePoints(p,
		"a-rather-long-name", plotter.XYs{{X: 1, Y: 10}, {X: 1000, Y: 100}},
		"b", plotter.XYs{{X: 1, Y: 100}, {X: 1000, Y: 10}}))
	logAxis(&p.X, 1, 1000)
	logAxis(&p.Y, 10, 100)
	path := filepath.Join(t.TempDir(), "c.png")
	require.NoError(t, saveChart(p, chartW, chartH, path, "png"))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	b := img.Bounds()
	require.Greater(t, b.Dx(), b.Dy())
	// The rightmost column of pixels is blank: nothing is cut at the edge.
	for y := b.Min.Y; y < b.Max.Y; y++ {
		r, g, bl, _ := img.At(b.Max.X-1, y).RGBA()
		require.True(t, r == 0xffff && g == 0xffff && bl == 0xffff, "pixel at the right edge, row %d", y)
	}
	// The legend is drawn in the column right of the plot (the last 15 %
	// of the width, where the plot, cropped short of it, draws nothing).
	inked := false
	for x := b.Max.X - b.Dx()*15/100; x < b.Max.X && !inked; x++ {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				inked = true
				break
			}
		}
	}
	require.True(t, inked, "no legend in the right-hand column")
}
