// Command pkggraph draws the module's package diagram, docs/img/packages.svg:
// one box per package, one arrow per import among the module's packages
// (test-only imports left out). A package sits above every package it
// imports, so every arrow points down.
//
//	go run ./bench/cmd/pkggraph > docs/img/packages.svg
//
// TestDiagramIsCurrent fails when the checked-in picture no longer matches
// the imports.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"slices"
	"strings"
)

const module = "github.com/masqroute/masqroute"

func main() {
	imports, err := listImports()
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(render(imports))
}

// listImports returns each package of the module (path relative to it,
// "." for none) with the module packages it imports.
func listImports() (map[string][]string, error) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	imports := make(map[string][]string)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return imports, nil
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		var own []string
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				own = append(own, rel)
			}
		}
		imports[strings.TrimPrefix(p.ImportPath, module+"/")] = own
	}
}

// Layout, in pixels.
const (
	charW   = 7.2 // 12 px monospace
	boxH    = 26
	boxPad  = 10
	gapX    = 14
	rowGap  = 70
	margin  = 20
	legendH = 30
)

type node struct {
	path string
	row  int
	x, w float64 // left edge and width
}

func (n *node) center() float64 { return n.x + n.w/2 }

// render lays the packages out in rows and writes the SVG.
func render(imports map[string][]string) []byte {
	importers := make(map[string][]string)
	for p, deps := range imports {
		for _, d := range deps {
			importers[d] = append(importers[d], p)
		}
	}
	for _, ps := range importers {
		slices.Sort(ps) // map order must not reach the sums below
	}
	// A package sits one row above the highest package it imports. One
	// that imports none of the module sits right below its lowest
	// importer (at the top if it has none), not at the bottom with the
	// rest: that keeps its arrows short.
	nodes := make(map[string]*node)
	var depth func(p string) int
	depth = func(p string) int {
		if n, ok := nodes[p]; ok {
			return n.row
		}
		n := &node{path: p, w: float64(len(p))*charW + 2*boxPad}
		nodes[p] = n
		for _, imp := range imports[p] {
			n.row = max(n.row, depth(imp)+1)
		}
		return n.row
	}
	rows := 0
	for p := range imports {
		rows = max(rows, depth(p)+1)
	}
	for p, n := range nodes {
		if len(imports[p]) > 0 {
			continue
		}
		n.row = rows - 1
		for _, imp := range importers[p] {
			n.row = min(n.row, nodes[imp].row-1)
		}
	}
	byRow := make([][]*node, rows)
	for _, n := range nodes {
		byRow[n.row] = append(byRow[n.row], n)
	}

	// Order each row by the mean position of its neighbours in the row
	// swept from (the barycenter heuristic), a few sweeps each way: it
	// keeps most arrows short and few crossing.
	for _, row := range byRow {
		slices.SortFunc(row, func(a, b *node) int { return strings.Compare(a.path, b.path) })
		place(row)
	}
	for sweep := range 4 {
		up := sweep%2 == 0
		for i := range rows {
			r, adj := i, imports
			if !up {
				r, adj = rows-1-i, importers
			}
			mean := func(n *node) float64 {
				if len(adj[n.path]) == 0 {
					return n.center()
				}
				var sum float64
				for _, p := range adj[n.path] {
					sum += nodes[p].center()
				}
				return sum / float64(len(adj[n.path]))
			}
			slices.SortStableFunc(byRow[r], func(a, b *node) int {
				return cmp.Or(cmp.Compare(mean(a), mean(b)), strings.Compare(a.path, b.path))
			})
			place(byRow[r])
		}
	}
	left, right := 0.0, 0.0
	for _, row := range byRow {
		left, right = min(left, row[0].x), max(right, row[len(row)-1].x+row[len(row)-1].w)
	}
	for _, n := range nodes {
		n.x += margin - left
	}
	width := right - left
	width += 2 * margin
	height := float64(rows)*boxH + float64(rows-1)*rowGap + 2*margin + legendH
	y := func(row int) float64 { return margin + float64(rows-1-row)*(boxH+rowGap) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="monospace" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>` + "\n")
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", width, height)

	// Edges first, under the boxes; in a fixed order so the file is stable.
	paths := make([]string, 0, len(nodes))
	for p := range nodes {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		from := nodes[p]
		deps := slices.Sorted(slices.Values(imports[p]))
		for i, imp := range deps {
			to := nodes[imp]
			// Spread the arrows over the bottom of the importing box.
			x1 := from.x + from.w*float64(i+1)/float64(len(deps)+1)
			y1 := y(from.row) + boxH
			x2, y2 := to.center(), y(to.row)
			dy := (y2 - y1) / 2
			fmt.Fprintf(&b, `<path d="M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="none" stroke="%s" stroke-opacity="0.55" marker-end="url(#arrow)"><title>%s → %s</title></path>`+"\n",
				x1, y1, x1, y1+dy, x2, y2-dy, x2, y2, color(imp).stroke, p, imp)
		}
	}
	for _, p := range paths {
		n := nodes[p]
		c := color(p)
		fmt.Fprintf(&b, `<g><title>%s</title><rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="4" fill="%s" stroke="%s"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text></g>`+"\n",
			p, n.x, y(n.row), n.w, boxH, c.fill, c.stroke, n.center(), y(n.row)+boxH/2+4, p)
	}
	// Legend.
	lx, ly := float64(margin), height-margin-12
	for _, g := range groups {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="14" height="14" rx="3" fill="%s" stroke="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			lx, ly, g.fill, g.stroke, lx+20, ly+11, g.name)
		lx += 20 + float64(len(g.name))*charW + 24
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#555">arrow: imports (tests left out)</text>`+"\n", lx, ly+11)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// place puts a row's boxes side by side, centered on x = 0.
func place(row []*node) {
	x := -gapX / 2.0
	for _, n := range row {
		x -= (n.w + gapX) / 2
	}
	for _, n := range row {
		n.x = x
		x += n.w + gapX
	}
}

type group struct {
	name         string
	fill, stroke string
	match        func(path string) bool
}

var groups = []group{
	{"router", "#cfe2ff", "#3569b5", func(p string) bool { return p == "engine" }},
	{"proxy", "#ffe0c2", "#c06a1a", func(p string) bool { return p == "engine/proxy" }},
	{"leaf structures", "#d6f5d6", "#2f8a2f", func(p string) bool { return p == "shardmap" || p == "ringbuf" }},
	{"engine/internal", "#eeeeee", "#777777", func(p string) bool { return strings.HasPrefix(p, "engine/internal/") }},
	{"other library", "#fff6c2", "#9a8a20", func(p string) bool { return strings.HasPrefix(p, "engine/") }},
	{"programs and benchmarks", "#ffffff", "#999999", func(string) bool { return true }},
}

func color(path string) group {
	for _, g := range groups {
		if g.match(path) {
			return g
		}
	}
	panic("unreachable")
}
