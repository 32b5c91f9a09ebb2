package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// A Result is every run of one benchmark at one GOMAXPROCS.
type Result struct {
	Name    string               // without the -N suffix: "BenchmarkDispatch/impl=engine/sessions=1/churn=0"
	Procs   int                  // the -N suffix (GOMAXPROCS); 1 when absent
	Params  map[string]string    // the key=value path elements: impl, sessions, churn
	Runs    []map[string]float64 // one per output line: unit → value
	Metrics map[string][]float64 // unit → the values of every run that has it
}

// Top is the top-level benchmark name without "Benchmark": "Dispatch".
func (r *Result) Top() string {
	top, _, _ := strings.Cut(strings.TrimPrefix(r.Name, "Benchmark"), "/")
	return top
}

// Data is a parsed set of benchmark output files.
type Data struct {
	Config  map[string]string // "key: value" lines (goos, cpu, commit, ...) of all inputs; the first value wins
	Inputs  []*Input          // one per Parse call, in order
	Results []*Result
	index   map[string]*Result
}

// An Input is one parsed file: its own configuration lines and which
// benchmarks it holds, so that the report can tell inputs taken at
// different commits or with different commands apart.
type Input struct {
	Name   string            // file name; "" when unknown
	Config map[string]string // this input's "key: value" lines; the first value wins
	Tops   []string          // top-level benchmarks with results in this input, in order of appearance
}

// Kind is "e2e" for an input holding only BenchmarkE2E results, "micro"
// for one holding only others, "micro+e2e" for both, "" for none.
func (in *Input) Kind() string {
	e2e, micro := false, false
	for _, t := range in.Tops {
		if t == "E2E" {
			e2e = true
		} else {
			micro = true
		}
	}
	switch {
	case e2e && micro:
		return "micro+e2e"
	case e2e:
		return "e2e"
	case micro:
		return "micro"
	}
	return ""
}

var procsSuffix = regexp.MustCompile(`^(.*)-(\d+)$`)

// Parse reads go test -bench output (the benchstat format) from r into d.
func (d *Data) Parse(r io.Reader) error { return d.ParseNamed("", r) }

// ParseNamed is Parse for an input with a name (the file's). The format is
// read by golang.org/x/perf/benchfmt; configuration lines ("key: value")
// are those in force at the input's results, and values keep the units
// they were written in (ns/op, not benchfmt's normalized sec/op).
func (d *Data) ParseNamed(name string, r io.Reader) error {
	if d.Config == nil {
		d.Config = map[string]string{}
		d.index = map[string]*Result{}
	}
	in := &Input{Name: name, Config: map[string]string{}}
	d.Inputs = append(d.Inputs, in)
	br := benchfmt.NewReader(r, name)
	for br.Scan() {
		var rec *benchfmt.Result
		switch x := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return fmt.Errorf("malformed benchmark output: %w", x)
		case *benchfmt.Result:
			rec = x
		default:
			continue // unit metadata
		}
		for _, c := range rec.Config {
			if !c.File {
				continue // per-benchmark keys benchfmt derives from the name
			}
			if _, ok := d.Config[c.Key]; !ok {
				d.Config[c.Key] = strings.TrimSpace(string(c.Value))
			}
			if _, ok := in.Config[c.Key]; !ok {
				in.Config[c.Key] = strings.TrimSpace(string(c.Value))
			}
		}
		full, procs := "Benchmark"+rec.Name.String(), 1
		if pm := procsSuffix.FindStringSubmatch(full); pm != nil {
			full = pm[1]
			procs, _ = strconv.Atoi(pm[2])
		}
		res := d.result(full, procs)
		if !slices.Contains(in.Tops, res.Top()) {
			in.Tops = append(in.Tops, res.Top())
		}
		run := map[string]float64{}
		for _, v := range rec.Values {
			unit, value := v.Unit, v.Value
			if v.OrigUnit != "" { // benchfmt tidied it (ns/op → sec/op): keep what was written
				unit, value = v.OrigUnit, v.OrigValue
			}
			run[unit] = value
			res.Metrics[unit] = append(res.Metrics[unit], value)
		}
		res.Runs = append(res.Runs, run)
	}
	return br.Err()
}

// DropRuns removes every run for which drop is true and returns how many
// runs it removed.
func (d *Data) DropRuns(drop func(r *Result, run map[string]float64) bool) int {
	n := 0
	for _, r := range d.Results {
		kept := r.Runs[:0]
		for _, run := range r.Runs {
			if drop(r, run) {
				n++
				continue
			}
			kept = append(kept, run)
		}
		r.Runs = kept
		r.Metrics = map[string][]float64{}
		for _, run := range kept {
			for unit, v := range run {
				r.Metrics[unit] = append(r.Metrics[unit], v)
			}
		}
	}
	return n
}

func (d *Data) result(name string, procs int) *Result {
	key := name + "\x00" + strconv.Itoa(procs)
	if r := d.index[key]; r != nil {
		return r
	}
	r := &Result{Name: name, Procs: procs, Params: map[string]string{}, Metrics: map[string][]float64{}}
	for _, part := range strings.Split(name, "/")[1:] {
		if k, v, ok := strings.Cut(part, "="); ok {
			r.Params[k] = v
		}
	}
	d.index[key] = r
	d.Results = append(d.Results, r)
	return r
}

// Find returns the result of top with exactly these params at procs.
func (d *Data) Find(top string, procs int, params map[string]string) *Result {
	for _, r := range d.Results {
		if r.Top() != top || r.Procs != procs || len(r.Params) != len(params) {
			continue
		}
		match := true
		for k, v := range params {
			if r.Params[k] != v {
				match = false
				break
			}
		}
		if match {
			return r
		}
	}
	return nil
}

// Values lists the distinct values of param among top's results, numeric
// values in numeric order and the rest in preferred order, then by name.
func (d *Data) Values(top, param string, preferred ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range d.Results {
		if v, ok := r.Params[param]; ok && r.Top() == top && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	rank := func(v string) int {
		if i := slices.Index(preferred, v); i >= 0 {
			return i
		}
		return len(preferred)
	}
	sort.Slice(out, func(i, j int) bool {
		a, errA := strconv.ParseFloat(out[i], 64)
		b, errB := strconv.ParseFloat(out[j], 64)
		if errA == nil && errB == nil {
			return a < b
		}
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}

// Has reports whether d holds results of the top-level benchmark top
// ("Dispatch", "E2E").
func (d *Data) Has(top string) bool {
	for _, r := range d.Results {
		if r.Top() == top && len(r.Runs) > 0 {
			return true
		}
	}
	return false
}

// HasMicro reports whether d holds results of the micro-benchmarks (any
// benchmark but BenchmarkE2E).
func (d *Data) HasMicro() bool {
	for _, r := range d.Results {
		if r.Top() != "E2E" && len(r.Runs) > 0 {
			return true
		}
	}
	return false
}

// Procs lists the GOMAXPROCS values top was run with, ascending.
func (d *Data) Procs(top string) []int {
	var out []int
	for _, r := range d.Results {
		if r.Top() == top && !slices.Contains(out, r.Procs) {
			out = append(out, r.Procs)
		}
	}
	slices.Sort(out)
	return out
}

// Summary is the median and range of one metric's runs.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the summary of metric in r; ok is false when r is nil
// or has no such metric. The median is benchmath's (AssumeNothing, the
// statistic benchstat reports by default).
func Summarize(r *Result, metric string) (s Summary, ok bool) {
	if r == nil || len(r.Metrics[metric]) == 0 {
		return Summary{}, false
	}
	sample := benchmath.NewSample(slices.Clone(r.Metrics[metric]), &benchmath.DefaultThresholds) // it sorts what it is given
	v := sample.Values
	sum := benchmath.AssumeNothing.Summary(sample, 0.95)
	return Summary{Median: sum.Center, Min: v[0], Max: v[len(v)-1], N: len(v)}, true
}
