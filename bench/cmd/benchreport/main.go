// Command benchreport turns the output of masqroute's micro-benchmarks
// (go test -bench ./bench/, the benchstat text format) into a markdown
// report with tables (median of the -count runs, with min–max), a check of
// the project's performance targets, and SVG charts.
//
// Usage:
//
//	go test -run '^$' -bench 'Dispatch|Latency' -count 5 -cpu 1,2 ./bench/ > out.txt
//	go run ./bench/cmd/benchreport -out docs -commit $(git rev-parse --short HEAD) \
//		-command "go test ..." out.txt
//
// writes docs/benchmarks.md and docs/img/*.svg (-format png for PNG).
// -max-other 0.25 leaves out runs during which other processes kept busy
// more than the cores the run left free plus 0.25 CPUs (the other-cpus
// metric; on 2 cores: 1.25 for 1 dispatcher, 0.25 for 2), and says how many
// it left out. The command, commit and Go
// version can also come from "command:", "commit:" and "go:" lines in the
// input (benchstat configuration lines); flags win. The CPU model and OS
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
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	out := fs.String("out", "bench/results/report", "output directory")
	md := fs.String("md", "benchmarks.md", "markdown file name inside -out")
	img := fs.String("img", "img", "chart directory inside -out")
	format := fs.String("format", "svg", "chart format: svg or png")
	maxOther := fs.Float64("max-other", -1, "leave out runs during which other processes used more than the cores the run left free (cores − dispatchers) plus this many CPUs; negative: keep every run")
	commit := fs.String("commit", "", "commit the numbers were taken at (default: the input's commit: line)")
	command := fs.String("command", "", "command that produced the input (default: the input's command: line)")
	goVersion := fs.String("go", "", "Go version (default: the input's go: line, else this binary's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "svg" && *format != "png" {
		return fmt.Errorf("-format must be svg or png")
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("no input files")
	}
	var d Data
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = d.Parse(f)
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
	env := Env{
		Command:   first(*command, d.Config["command"], "unknown"),
		Commit:    first(*commit, d.Config["commit"], "unknown"),
		GoVersion: first(*goVersion, d.Config["go"], runtime.Version()+" (the report tool's)"),
		CPU:       first(d.Config["cpu"], "unknown"),
		Cores:     first(d.Config["cores"], strconv.Itoa(runtime.NumCPU())+" (the report machine's)"),
		OS:        first(d.Config["goos"], "?") + "/" + first(d.Config["goarch"], "?"),
		Filter:    filter,
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

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
