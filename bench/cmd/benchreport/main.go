// Command benchreport turns the output of masqroute's benchmarks (go test
// -bench, the benchstat text format) into a markdown report with tables
// (median of the -count runs, with min–max), a check of the project's
// performance targets, and SVG charts. It reads the micro-benchmarks of
// ./bench/ (BenchmarkDispatch, BenchmarkLatency, BenchmarkDispatchBurst) and
// the end-to-end benchmark of ./bench/e2e/ (BenchmarkE2E), from one file or
// several, and writes a section for whatever it found.
//
// Usage:
//
//	go test -run '^$' -bench 'Dispatch|Latency' -count 5 -cpu 1,2 ./bench/ > out.txt
//	go test -run '^$' -bench E2E -count 5 ./bench/e2e/ > e2e.txt
//	go run ./bench/cmd/benchreport -out docs -intro docs/benchmarks-intro.md out.txt e2e.txt
//
// writes docs/benchmarks.md and docs/img/*.svg (-format png for PNG).
// -intro inserts a markdown file (a hand-written analysis) right after the
// report's title and environment table, so that the analysis can live in
// the repository and the generated part be regenerated around it.
// -max-other 0.25 leaves out runs during which other processes kept busy
// more than the cores the run left free plus 0.25 CPUs (the other-cpus
// metric; on 2 cores: 1.25 for 1 dispatcher, 0.25 for 2), and says how many
// it left out. The command, commit and Go
// version can also come from "command:", "commit:" and "go:" lines in the
// input (benchstat configuration lines); flags win. Inputs with different
// such lines are listed side by side ("micro: X; e2e: Y", or by file name
// when several inputs hold the same kind of benchmark); an input without a
// commit: or command: line counts as "unknown". An "engine:" line (a note on
// which engine an input measured) gets its own row. The CPU model and OS
// come from the "cpu:", "goos:" and "goarch:" lines go test prints; the core
// count from a "cores:" line, else from this machine.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	out := fs.String("out", "docs", "output directory")
	md := fs.String("md", "benchmarks.md", "markdown file name inside -out")
	img := fs.String("img", "img", "chart directory inside -out")
	format := fs.String("format", "svg", "chart format: svg or png")
	maxOther := fs.Float64("max-other", -1, "leave out runs during which other processes used more than the cores the run left free (cores − dispatchers) plus this many CPUs; negative: keep every run")
	commit := fs.String("commit", "", "commit the numbers were taken at (default: the input's commit: line)")
	command := fs.String("command", "", "command that produced the input (default: the input's command: line)")
	goVersion := fs.String("go", "", "Go version (default: the input's go: line, else this binary's)")
	intro := fs.String("intro", "", "markdown file inserted after the title and environment table (a hand-written analysis)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "svg" && *format != "png" {
		return fmt.Errorf("-format must be svg or png")
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("no input files")
	}
	var introText string
	if *intro != "" {
		b, err := os.ReadFile(*intro)
		if err != nil {
			return fmt.Errorf("-intro: %w", err)
		}
		introText = string(b)
	}
	var d Data
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = d.ParseNamed(name, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(d.Results) == 0 {
		return fmt.Errorf("no benchmark results in %v", fs.Args())
	}
	var filter string
	if *maxOther >= 0 {
		cores, err := strconv.Atoi(d.Config["cores"])
		if err != nil {
			return fmt.Errorf("-max-other needs a cores: line in the input")
		}
		total := 0
		for _, r := range d.Results {
			total += len(r.Runs)
		}
		n := d.DropRuns(func(r *Result, run map[string]float64) bool {
			v, ok := run["other-cpus"]
			return ok && v > float64(max(cores-r.Procs, 0))+*maxOther
		})
		filter = fmt.Sprintf("%d of %d: those during which other processes kept more than (cores − dispatchers) + %g CPUs busy (other-cpus)", n, total, *maxOther)
	}
	labels := inputLabels(d.Inputs)
	code := func(s string) string { return "`" + s + "`" }
	plain := func(s string) string { return s }
	key := func(k string) func(map[string]string) string {
		return func(c map[string]string) string { return c[k] }
	}
	env := Env{
		Command:   first(flagValue(*command, code), perInput(d.Inputs, labels, key("command"), "unknown", code), "unknown"),
		Commit:    first(flagValue(*commit, plain), perInput(d.Inputs, labels, key("commit"), "unknown", plain), "unknown"),
		GoVersion: first(*goVersion, perInput(d.Inputs, labels, key("go"), "", plain), runtime.Version()+" (the report tool's)"),
		CPU:       first(perInput(d.Inputs, labels, key("cpu"), "", plain), "unknown"),
		Cores:     first(perInput(d.Inputs, labels, key("cores"), "", plain), strconv.Itoa(runtime.NumCPU())+" (the report machine's)"),
		OS: first(perInput(d.Inputs, labels, func(c map[string]string) string {
			if c["goos"] == "" && c["goarch"] == "" {
				return ""
			}
			return first(c["goos"], "?") + "/" + first(c["goarch"], "?")
		}, "", plain), "?/?"),
		Engine: perInput(d.Inputs, labels, key("engine"), "", plain),
		Filter: filter,
		Intro:  introText,
	}
	if err := os.MkdirAll(filepath.Join(*out, *img), 0o755); err != nil {
		return err
	}
	charts, err := Charts(&d, *out, *img, *format)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	return os.WriteFile(filepath.Join(*out, *md), []byte(Markdown(&d, env, charts)), 0o644)
}

func flagValue(v string, format func(string) string) string {
	if v == "" {
		return ""
	}
	return format(v)
}

// inputLabels names each input in the environment table: its kind ("micro",
// "e2e") where that tells the inputs apart, else its file name.
func inputLabels(inputs []*Input) []string {
	kinds := map[string]int{}
	for _, in := range inputs {
		kinds[in.Kind()]++
	}
	labels := make([]string, len(inputs))
	for i, in := range inputs {
		labels[i] = in.Kind()
		if kinds[in.Kind()] > 1 || labels[i] == "" {
			labels[i] = fmt.Sprintf("input %d", i+1)
			if in.Name != "" {
				labels[i] = filepath.Base(in.Name)
			}
		}
	}
	return labels
}

// perInput is the value get finds in the inputs' configuration lines,
// formatted: the value alone when every input with results has it, else
// "label, label: value; label: value". An input without a value counts as
// having the value missing when missing is not "", and is left out
// otherwise; "" when no input has a value.
func perInput(inputs []*Input, labels []string, get func(map[string]string) string, missing string, format func(string) string) string {
	var values []string              // distinct, in order of first appearance
	byValue := map[string][]string{} // value → labels
	withResults, with := 0, 0
	for i, in := range inputs {
		if len(in.Tops) > 0 {
			withResults++
		}
		v := get(in.Config)
		if v == "" {
			if missing == "" || len(in.Tops) == 0 {
				continue
			}
			v = missing
		}
		with++
		if _, ok := byValue[v]; !ok {
			values = append(values, v)
		}
		byValue[v] = append(byValue[v], labels[i])
	}
	switch {
	case len(values) == 0:
		return ""
	case len(values) == 1 && values[0] == missing:
		return ""
	case len(values) == 1 && with >= withResults:
		return format(values[0])
	}
	parts := make([]string, len(values))
	for i, v := range values {
		f := format(v)
		if v == missing {
			f = v
		}
		parts[i] = strings.Join(byValue[v], ", ") + ": " + f
	}
	return strings.Join(parts, "; ")
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
