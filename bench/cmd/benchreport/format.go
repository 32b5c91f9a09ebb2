package main

import (
	"fmt"
	"math"
	"strings"
)

// fmtValue formats one number for a table: SI suffixes for large ones,
// three significant digits otherwise.
func fmtValue(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e9:
		return trim(fmt.Sprintf("%.3g", v/1e9)) + "G"
	case a >= 1e6:
		return trim(fmt.Sprintf("%.3g", v/1e6)) + "M"
	case a >= 1e4:
		return trim(fmt.Sprintf("%.3g", v/1e3)) + "k"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 0.01:
		return trim(fmt.Sprintf("%.3g", v))
	default:
		return fmt.Sprintf("%.1e", v)
	}
}

func trim(s string) string {
	if strings.Contains(s, ".") && !strings.Contains(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// fmtSummary is "median (min–max)", or the median alone for a single run or
// when withRange is false.
func fmtSummary(s Summary, withRange bool) string {
	if !withRange || s.N < 2 || s.Min == s.Max {
		return fmtValue(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtValue(s.Median), fmtValue(s.Min), fmtValue(s.Max))
}

// table writes a markdown table.
func table(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`) // a bare | would end the cell, even in a code span
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n")
}
