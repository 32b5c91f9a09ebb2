package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
)

var (
	e2eDuration   = flag.Duration("e2e.duration", 2*time.Second, "BenchmarkE2E: measured interval of each run")
	e2eWarmup     = flag.Duration("e2e.warmup", 300*time.Millisecond, "BenchmarkE2E: warm-up before each measured interval")
	e2eRate       = flag.Float64("e2e.rate", 20000, "BenchmarkE2E: offered datagrams/s (all tunnels together) of mode=open below 1000 tunnels")
	e2eRate1000   = flag.Float64("e2e.rate1000", 10000, "BenchmarkE2E: offered datagrams/s of mode=open at 1000 tunnels or more")
	e2eConns      = flag.Int("e2e.conns", 1, "BenchmarkE2E: HTTP/3 (or QUIC) connections the tunnels are spread over")
	e2eTunnels    = flag.String("e2e.tunnels", "1,100,1000", "BenchmarkE2E: tunnel counts, comma-separated")
	e2eModes      = flag.String("e2e.modes", "open,closed", "BenchmarkE2E: modes, comma-separated (open, closed)")
	e2eImpls      = flag.String("e2e.impls", "masqroute,baseline", "BenchmarkE2E: servers, comma-separated (masqroute, baseline, rawquic)")
	e2ePin        = flag.Bool("e2e.pin", true, "BenchmarkE2E: pin the proxy process to one CPU and this process to another")
	e2ePerf       = flag.Bool("e2e.perf", true, "BenchmarkE2E: count the proxy's syscalls with perf tracepoint counters where the kernel allows")
	e2eCPUProfile = flag.String("e2e.cpuprofile", "", "BenchmarkE2E: `dir`ectory where each proxy process writes a CPU profile of its measured interval")
	e2eTransports = flag.String("e2e.transports", "", "BenchmarkE2E: masqroute's steered QUIC sockets, comma-separated, a scenario each (masqroute only; bench/e2e/transports.go); empty: one socket, 4-byte IDs")
	e2eCarriers   = flag.String("e2e.carriers", "", "BenchmarkE2E: masqroute's carriers besides HTTP/3 (h2, h1), comma-separated, a scenario each (masqroute only: the baseline speaks HTTP/3 alone)")
	e2eAffinity   = flag.String("e2e.affinity", "off", "BenchmarkE2E: with -e2e.transports, off (tunnels round-robin over the workers) and/or on (each transport's on the worker of its index, proxy.WithWorker), comma-separated, a scenario each")
	e2eChildEnv   = flag.String("e2e.childenv", "", "BenchmarkE2E: comma-separated KEY=VALUE `list` added to every proxy process's environment (e.g. GOGC=200,GOMEMLIMIT=1GiB)")
)

func TestMain(m *testing.M) {
	if e2e.IsChild() { // BenchmarkE2E's proxy process: this binary re-executed
		os.Exit(e2e.ChildMain())
	}
	goleak.VerifyTestMain(closingMain{m})
}

// closingMain closes any proxy process a failed benchmark left running
// before goleak looks for leaks.
type closingMain struct{ m *testing.M }

func (c closingMain) Run() int {
	code := c.m.Run()
	if err := e2e.CloseProcesses(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: closing leftover proxy processes:", err)
		code = max(code, 1)
	}
	return code
}

// BenchmarkE2E measures masqroute's proxy and the stock quic-go baseline
// (and, with -e2e.impls, raw QUIC datagrams: the ceiling) under the same
// load on loopback, each proxy in a process of its own.
//
// Method. The proxy under test runs in a child process (this test binary
// re-executed; TestMain hands it to e2e.ChildMain) pinned to one CPU with
// GOMAXPROCS 1; the load generator, masqroute's client (the same for both
// proxies) and the UDP echo target run in this process, pinned to another
// CPU, also at GOMAXPROCS 1 while it measures. With fewer than two CPUs, or
// if an affinity call fails, both run unpinned, and the e2e-pinning line
// at the top of the output says so. Every run starts a fresh proxy
// process.
//
// Alternation. For each scenario the implementations are measured in
// rounds: one run of each per round, the order rotated every round, so
// that a noisy machine disturbs them alike. The testing package runs a
// sub-benchmark's -count repetitions in a row; here the first repetition
// that finds no result waiting runs a round and the results of the others
// wait for their sub-benchmark, so repetition k of every implementation
// comes from round k. (A sub-benchmark the -bench pattern leaves out is
// not measured.)
//
// Each run lasts -e2e.warmup plus -e2e.duration plus a 500 ms drain
// whatever b.N is (ns/op is reported as 0); run with -benchtime 1x (as
// make bench-e2e does) so that each repetition calls it once. Metrics:
//
//	dgrams/s          replies received per second (round trips completed)
//	loss-%            datagrams sent in the interval that never came back
//	p50-us p99-us p999-us  round-trip latency percentiles, µs (open loop:
//	                  from the time a datagram was due, pacer lag included)
//	proxy-cpu-us/rt   proxy process CPU (user + system, /proc/PID/stat)
//	                  per round trip
//	proxy-cpu-%       the same CPU over wall time: 100 is the proxy's
//	                  core saturated
//	proxy-ctxsw/rt    proxy context switches (voluntary + involuntary,
//	                  every thread, /proc/PID/task/*/status) per round trip
//	proxy-syscalls/rt proxy syscalls per round trip (perf tracepoint
//	                  raw_syscalls:sys_enter; only where perf_event_open
//	                  is allowed: the e2e-syscalls line says)
//	proxy-sys-NAME/rt the same for one syscall (e2e.SyscallNames)
//	load-cpu-us/rt    this process's CPU per round trip: client, load
//	                  generator and echo target
//	load-cpu-%        the same over wall time: near 100 the load side, not
//	                  the proxy, is the limit
//	other-cpu-%       CPU the rest of the machine took meanwhile (other
//	                  tenants, the kernel's threads, hypervisor steal), in
//	                  % of one CPU (/proc/stat): a run where it is high is
//	                  suspect
//	proxy-rss-MB      proxy resident set size at the end of the run, MiB
//	proxy-peak-rss-MB the largest it was (VmHWM), MiB
//	dp-*/rt           every masqroute_datapath_* counter the proxy exports
//	                  on /metrics, per round trip, each label set a metric
//	                  of its own (e2e.MetricUnit:
//	                  masqroute_datapath_wakeups_total{goroutine="worker"}
//	                  is dp-wakeups-worker/rt); gauges as they are,
//	                  without /rt (dp-workers); the baseline exports none
//
// Round trips are the replies received over the measured interval and the
// drain, the same span as the proxy's counters (read at its start and end).
//
// Scenarios: tunnels 1, 100 and 1000 (-e2e.tunnels) in mode open, a fixed
// offered rate over all tunnels (-e2e.rate, 20,000/s, below 1000 tunnels;
// -e2e.rate1000, 10,000/s, at 1000 and more), and closed, each tunnel
// keeping loadgen.AutoWindow(tunnels) datagrams in flight (64 at 1
// tunnel, 3 at 100, 1 at 1000) as fast as replies come: the closed loop at
// one tunnel is the bulk case, 64 in flight on one tunnel.
//
//	go test -run '^$' -bench E2E -benchtime 1x -count 5 ./bench/e2e/
//	go test -run '^$' -bench 'E2E/impl=masqroute/tunnels=100$/mode=closed' -benchtime 1x -count 3 \
//	    ./bench/e2e/ -e2e.childenv GOGC=400      # the proxy under another GC setting
//	go test -run '^$' -bench 'E2E/impl=masqroute/tunnels=100$/mode=closed' -benchtime 1x \
//	    -e2e.cpuprofile /tmp/prof ./bench/e2e/
//
// With -e2e.transports 1,2 each scenario also runs masqroute alone on that
// many steered SO_REUSEPORT sockets (transports=T; e2e.ServerConfig),
// reporting transport-T-share-% (each transport's share of the QUIC
// packets received) and stray-pkts (packets on a transport that did not
// know their connection ID). With -e2e.carriers h2 (or h1) each scenario
// also runs masqroute alone with its client on that carrier (carrier=C):
// the same tunnels as DATAGRAM capsules on HTTP/2 streams (or one HTTP/1.1
// connection per tunnel) over TCP, against HTTP/3 in the same run.
// -e2e.affinity off,on runs each transports scenario with tunnels spread
// round-robin over the executor's workers and with each transport's
// tunnels on the worker of its index (affinity=A).
//
// Under -short only a smoke variant runs: one tunnel, closed loop, 200 ms,
// each proxy in its process all the same.
func BenchmarkE2E(b *testing.B) {
	h := newHarness(b)
	for _, sc := range h.scenarios {
		for _, impl := range h.impls {
			if sc.masqrouteOnly() && impl != e2e.Masqroute {
				continue // the baseline: one socket, HTTP/3
			}
			b.Run(fmt.Sprintf("impl=%s/%s", impl, sc.name), func(b *testing.B) { h.sub(b, sc, impl) })
		}
	}
}

type scenario struct {
	name       string // "tunnels=N/mode=M", then "/transports=T/affinity=A" with -e2e.transports or "/carrier=C" with -e2e.carriers
	cfg        loadgen.Config
	transports int    // e2e.ServerConfig.Transports
	affinity   bool   // e2e.ServerConfig.Affinity
	carrier    string // e2e.ServerConfig.Carrier
}

// masqrouteOnly reports whether only masqroute runs sc: the baseline has
// one socket and speaks HTTP/3 alone.
func (sc scenario) masqrouteOnly() bool { return sc.transports > 0 || sc.carrier != "" }

// harness is BenchmarkE2E's state across its sub-benchmarks.
type harness struct {
	scenarios []scenario
	impls     []e2e.Impl
	proxyCPU  int      // -1: unpinned
	pinned    bool     // this process is pinned (to one CPU)
	perf      bool     // syscall counters work here
	childEnv  []string // -e2e.childenv

	rounds  map[string]int            // scenario name → rounds run
	waiting map[string][]*measurement // scenario name/impl → results not yet reported
	taken   map[*testing.B]*measurement
}

// measurement is one run's result and the counters around it.
type measurement struct {
	res   loadgen.Result
	proxy [2]e2e.Snapshot
	load  [2]time.Duration // this process's CPU
	busy  [2]time.Duration // the machine's busy CPU time
}

func newHarness(b *testing.B) *harness {
	h := &harness{
		proxyCPU: -1,
		rounds:   make(map[string]int),
		waiting:  make(map[string][]*measurement),
		taken:    make(map[*testing.B]*measurement),
	}
	duration, warmup, drain := *e2eDuration, *e2eWarmup, time.Duration(0)
	tunnels, modes := list(*e2eTunnels), list(*e2eModes)
	if testing.Short() {
		tunnels, modes = []string{"1"}, []string{"closed"}
		duration, warmup, drain = 200*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond
	}
	for _, t := range tunnels {
		n, err := strconv.Atoi(t)
		require.NoError(b, err, "-e2e.tunnels")
		for _, mode := range modes {
			cfg := loadgen.Config{Tunnels: n, Conns: *e2eConns, Size: 1200, Warmup: warmup, Duration: duration, Drain: drain}
			switch mode {
			case "open":
				cfg.Rate = *e2eRate
				if n >= 1000 {
					cfg.Rate = *e2eRate1000
				}
			case "closed":
			default:
				b.Fatalf("-e2e.modes: unknown mode %q", mode)
			}
			name := fmt.Sprintf("tunnels=%d/mode=%s", n, mode)
			if *e2eTransports == "" {
				h.scenarios = append(h.scenarios, scenario{name: name, cfg: cfg})
			}
			for _, tr := range list(*e2eTransports) {
				t, err := strconv.Atoi(tr)
				require.NoError(b, err, "-e2e.transports")
				require.Positive(b, t, "-e2e.transports")
				for _, a := range list(*e2eAffinity) {
					if a != "on" && a != "off" {
						b.Fatalf("-e2e.affinity: %q is neither on nor off", a)
					}
					h.scenarios = append(h.scenarios, scenario{
						name: fmt.Sprintf("%s/transports=%d/affinity=%s", name, t, a), cfg: cfg, transports: t, affinity: a == "on",
					})
				}
			}
			for _, c := range list(*e2eCarriers) {
				require.Contains(b, []string{"h2", "h1"}, c, "-e2e.carriers")
				h.scenarios = append(h.scenarios, scenario{name: fmt.Sprintf("%s/carrier=%s", name, c), cfg: cfg, carrier: c})
			}
		}
	}
	for _, s := range list(*e2eImpls) {
		impl, err := e2e.ParseImpl(s)
		require.NoError(b, err, "-e2e.impls")
		h.impls = append(h.impls, impl)
	}

	// This process on the first allowed CPU, the proxies on the second.
	pinning := "none (-e2e.pin=false)"
	if *e2ePin {
		cpus, err := e2e.AllowedCPUs()
		switch {
		case err != nil:
			pinning = fmt.Sprintf("none (%v)", err)
		case len(cpus) < 2:
			pinning = fmt.Sprintf("none (%d CPU allowed)", len(cpus))
		default:
			if err := e2e.PinProcess(cpus[0]); err != nil {
				pinning = fmt.Sprintf("none (%v)", err)
				break
			}
			b.Cleanup(func() { _ = e2e.PinProcess(cpus...) })
			h.pinned, h.proxyCPU = true, cpus[1]
			pinning = fmt.Sprintf("proxy process on CPU %d, load generator and echo target on CPU %d, GOMAXPROCS 1 each", cpus[1], cpus[0])
		}
	}
	counting := "off (-e2e.perf=false)"
	if *e2ePerf {
		// Counting this process's own syscalls shows whether the kernel
		// lets us.
		if sc, err := e2e.OpenSyscallCounters(os.Getpid()); err != nil {
			counting = fmt.Sprintf("off (%v)", err)
		} else {
			sc.Close()
			h.perf, counting = true, "perf tracepoint counters on the proxy process"
		}
	}
	for _, kv := range list(*e2eChildEnv) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			b.Fatalf("-e2e.childenv: %q is not KEY=VALUE", kv)
		}
		h.childEnv = append(h.childEnv, kv)
	}
	childEnv := "none"
	if len(h.childEnv) > 0 {
		childEnv = strings.Join(h.childEnv, " ")
	}
	// Printed as benchfmt configuration lines, which benchstat keeps.
	fmt.Printf("e2e-pinning: %s\ne2e-syscalls: %s\ne2e-childenv: %s\n", pinning, counting, childEnv)
	return h
}

func list(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// sub is the body of one sub-benchmark: it reports a result of impl at sc,
// running a round first if none is waiting. The testing package may call it
// more than once for one repetition (one *testing.B) while it looks for a
// b.N; those calls report the same result again.
func (h *harness) sub(b *testing.B, sc scenario, impl e2e.Impl) {
	m := h.taken[b]
	if m == nil {
		key := sc.name + "/" + string(impl)
		if len(h.waiting[key]) == 0 {
			h.round(b, sc)
		}
		require.NotEmpty(b, h.waiting[key])
		m, h.waiting[key] = h.waiting[key][0], h.waiting[key][1:]
		h.taken[b] = m
	}
	m.report(b)
}

// round measures every selected implementation at sc once, in an order
// rotated each round, and queues the results.
func (h *harness) round(b *testing.B, sc scenario) {
	n := h.rounds[sc.name]
	h.rounds[sc.name]++
	for i := range h.impls {
		impl := h.impls[(n+i)%len(h.impls)]
		if sc.masqrouteOnly() && impl != e2e.Masqroute {
			continue
		}
		if !benchSelected(fmt.Sprintf("%s/impl=%s/%s", strings.SplitN(b.Name(), "/", 2)[0], impl, sc.name)) {
			continue
		}
		m := h.measure(b, sc, impl, n)
		key := sc.name + "/" + string(impl)
		h.waiting[key] = append(h.waiting[key], m)
	}
}

// measure runs impl at sc once in a fresh proxy process.
func (h *harness) measure(b *testing.B, sc scenario, impl e2e.Impl, round int) *measurement {
	runtime.GC() // the previous run's garbage is not this one's to collect
	if h.pinned {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	pcfg := e2e.ProcessConfig{CPU: h.proxyCPU, CountSyscalls: h.perf, Env: h.childEnv, Transports: sc.transports, Carrier: sc.carrier, Affinity: sc.affinity}
	if dir := *e2eCPUProfile; dir != "" {
		require.NoError(b, os.MkdirAll(dir, 0o755))
		pcfg.CPUProfile = filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", impl, strings.ReplaceAll(sc.name, "/", "-"), round))
	}
	env, err := e2e.StartProcess(impl, pcfg)
	require.NoError(b, err)
	defer func() { require.NoError(b, env.Close()) }()
	if h.proxyCPU >= 0 && env.Process.Pinned != h.proxyCPU {
		b.Logf("%s process runs unpinned (see its stderr)", impl)
	}
	if h.perf && env.Process.SyscallsErr != nil {
		b.Logf("%s process: no syscall counts: %v", impl, env.Process.SyscallsErr)
	}
	var usage usageProbe
	cfg := sc.cfg
	cfg.Probes = append(cfg.Probes, &usage)
	// Bounded whatever happens to the proxy.
	ctx, cancel := context.WithTimeout(context.Background(), 2*(cfg.Warmup+cfg.Duration)+2*time.Minute)
	defer cancel()
	res, err := env.Run(ctx, cfg)
	require.NoError(b, err)
	snaps := env.Process.Snapshots()
	require.Len(b, snaps, 2)
	require.Len(b, usage.cpu, 2)
	require.Len(b, usage.busy, 2)
	return &measurement{res: res, proxy: [2]e2e.Snapshot(snaps), load: [2]time.Duration(usage.cpu), busy: [2]time.Duration(usage.busy)}
}

// report reports m as b's metrics.
func (m *measurement) report(b *testing.B) {
	res := m.res
	b.ReportMetric(0, "ns/op") // one fixed-length run, not per-op work
	b.ReportMetric(res.RecvRate, "dgrams/s")
	b.ReportMetric(res.LossPct, "loss-%")
	b.ReportMetric(res.Latency.P50, "p50-us")
	b.ReportMetric(res.Latency.P99, "p99-us")
	b.ReportMetric(res.Latency.P999, "p999-us")
	rt := float64(hopCount(res, "generator: received"))
	if rt == 0 {
		b.Fatalf("no round trip completed")
	}
	s0, s1 := m.proxy[0], m.proxy[1]
	cpu := s1.CPU - s0.CPU
	b.ReportMetric(cpu.Seconds()*1e6/rt, "proxy-cpu-us/rt")
	if wall := s1.At.Sub(s0.At); wall > 0 {
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "proxy-cpu-%")
	}
	b.ReportMetric(float64(sub(s1.CtxSwitches, s0.CtxSwitches))/rt, "proxy-ctxsw/rt")
	if s1.PeakRSS > 0 {
		b.ReportMetric(float64(s1.RSS)/(1<<20), "proxy-rss-MB")
		b.ReportMetric(float64(s1.PeakRSS)/(1<<20), "proxy-peak-rss-MB")
	}
	if s1.Syscalls != nil {
		b.ReportMetric(float64(sub(s1.Syscalls[""], s0.Syscalls[""]))/rt, "proxy-syscalls/rt")
		for _, name := range e2e.SyscallNames {
			if v, ok := s1.Syscalls[name]; ok {
				b.ReportMetric(float64(sub(v, s0.Syscalls[name]))/rt, "proxy-sys-"+name+"/rt")
			}
		}
	}
	if m.load[0] >= 0 && m.load[1] >= 0 {
		load := m.load[1] - m.load[0]
		b.ReportMetric(load.Seconds()*1e6/rt, "load-cpu-us/rt")
		if wall := s1.At.Sub(s0.At); wall > 0 {
			b.ReportMetric(100*load.Seconds()/wall.Seconds(), "load-cpu-%")
			if m.busy[0] >= 0 && m.busy[1] >= 0 {
				// The load probe reads just before the proxy's: about the
				// same span.
				other := max(0, m.busy[1]-m.busy[0]-load-cpu)
				b.ReportMetric(100*other.Seconds()/wall.Seconds(), "other-cpu-%")
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s1.Metrics)) {
		v, unit := s1.Metrics[k], e2e.MetricUnit(k)
		if v.Type == "gauge" {
			b.ReportMetric(v.Value, unit)
			continue
		}
		b.ReportMetric((v.Value-s0.Metrics[k].Value)/rt, unit+"/rt")
	}
	reportTransports(b, res)
	if testing.Verbose() {
		var sb strings.Builder
		_ = res.WriteText(&sb)
		b.Log("\n" + sb.String())
	}
}

// benchSelected reports whether the -test.bench pattern selects the
// sub-benchmark named name, matched element by element as the testing
// package does (unanchored, split at slashes outside brackets and
// parentheses).
func benchSelected(name string) bool {
	f := flag.Lookup("test.bench")
	if f == nil {
		return true
	}
	pats := splitPattern(f.Value.String())
	elems := strings.Split(name, "/")
	for i, p := range pats {
		if i >= len(elems) {
			return false
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return true
		}
		if !re.MatchString(elems[i]) {
			return false
		}
	}
	return true
}

func splitPattern(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '\\':
			i++
		case '/':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// usageProbe records this process's CPU time, and the whole machine's busy
// time, each time the run reads its probes: at the start of the measured
// interval and after the drain.
type usageProbe struct{ cpu, busy []time.Duration }

func (u *usageProbe) Read(context.Context) (loadgen.Counters, error) {
	u.cpu = append(u.cpu, processCPU())
	busy, err := e2e.MachineBusy()
	if err != nil {
		busy = -1
	}
	u.busy = append(u.busy, busy)
	return loadgen.Counters{}, nil
}

// sub is a − b, or 0 where a per-thread sum went down (a thread ended).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func hopCount(res loadgen.Result, name string) uint64 {
	for _, h := range res.Hops {
		if h.Name == name {
			return h.Count
		}
	}
	return 0
}

// TestE2ESmoke runs masqroute and the baseline for 300 ms each, and the raw
// QUIC ceiling, and checks that each delivers datagrams: the harness works
// end to end.
func TestE2ESmoke(t *testing.T) {
	for _, impl := range e2e.Impls {
		t.Run(string(impl), func(t *testing.T) {
			env, err := e2e.Start(impl)
			require.NoError(t, err)
			defer func() { require.NoError(t, env.Close()) }()
			res, err := env.Run(context.Background(), loadgen.Config{
				Tunnels:  4,
				Conns:    2,
				Size:     1200,
				Window:   4,
				Warmup:   50 * time.Millisecond,
				Duration: 300 * time.Millisecond,
				Drain:    200 * time.Millisecond,
			})
			require.NoError(t, err)
			t.Logf("%s: %.0f dgrams/s, loss %.2f%%, p50 %.0fµs, p99 %.0fµs",
				impl, res.RecvRate, res.LossPct, res.Latency.P50, res.Latency.P99)
			require.Equal(t, string(impl), res.Transport)
			require.Positive(t, res.Received, "no datagram came back")
			require.Zero(t, res.SendErrors)
			require.Zero(t, res.Stray)
			// The target (or the raw echo server) saw the traffic.
			var seen bool
			for _, h := range res.Hops {
				if h.Stage == loadgen.StageTargetIn {
					seen = h.Count > 0
				}
			}
			require.True(t, seen, "hops: %+v", res.Hops)
		})
	}
}

// TestProcess starts each proxy in a process of its own, as BenchmarkE2E
// does, drives it briefly, and checks the counters read around the run and
// that the process is gone after Close.
func TestProcess(t *testing.T) {
	cpus, _ := e2e.AllowedCPUs()
	cpu := -1
	if len(cpus) >= 2 {
		cpu = cpus[1]
	}
	for _, impl := range []e2e.Impl{e2e.Masqroute, e2e.Baseline} {
		t.Run(string(impl), func(t *testing.T) {
			prof := filepath.Join(t.TempDir(), "cpu.pprof")
			env, err := e2e.StartProcess(impl, e2e.ProcessConfig{CPU: cpu, CountSyscalls: true, CPUProfile: prof})
			require.NoError(t, err)
			defer func() { require.NoError(t, env.Close()) }()
			p := env.Process
			require.Equal(t, cpu, p.Pinned)
			res, err := env.Run(context.Background(), loadgen.Config{
				Tunnels: 4, Size: 1200, Window: 4,
				Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, Drain: 100 * time.Millisecond,
			})
			require.NoError(t, err)
			require.Positive(t, res.Received)
			var toTarget, targetIn uint64
			for _, h := range res.Hops {
				switch h.Stage {
				case loadgen.StageProxyToTarget:
					toTarget = h.Count
				case loadgen.StageTargetIn:
					targetIn = h.Count
				}
			}
			require.Positive(t, toTarget, "the proxy's own counters came over: %+v", res.Hops)
			require.Positive(t, targetIn, "the echo target (this process) saw the traffic")
			s := p.Snapshots()
			require.Len(t, s, 2)
			require.Greater(t, s[1].CPU, s[0].CPU)
			require.Greater(t, s[1].CtxSwitches, uint64(0))
			if p.Syscalls != nil {
				require.Greater(t, s[1].Syscalls[""], s[0].Syscalls[""])
			} else {
				t.Logf("no syscall counts: %v", p.SyscallsErr)
			}
			require.NoError(t, env.Close())
			_, err = os.Stat(fmt.Sprintf("/proc/%d", p.PID))
			require.True(t, os.IsNotExist(err), "process %d still there", p.PID)
			st, err := os.Stat(prof)
			require.NoError(t, err)
			require.Positive(t, st.Size(), "CPU profile of the measured interval")
		})
	}
	// A child that fails before it is ready is reported and reaped.
	_, err := e2e.StartProcess("nginx", e2e.ProcessConfig{CPU: -1})
	require.ErrorContains(t, err, "exited before it was ready")
}

// reportTransports reports, for a run on several transports
// (-e2e.transports), each transport's share of the QUIC packets its
// connections received over the measured interval and drain
// (transport-T-share-%) and the packets that reached a transport which
// did not know their connection ID (stray-pkts: after the handshake, a
// packet steered to the wrong socket).
func reportTransports(b *testing.B, res loadgen.Result) {
	shares := res.DataPath.TransportShares()
	if shares == nil {
		return
	}
	for t, sh := range shares {
		b.ReportMetric(sh, fmt.Sprintf("transport-%d-share-%%", t))
	}
	b.ReportMetric(float64(res.Drops[e2e.StrayDrop]), "stray-pkts")
}

// TestProcessCarriers runs masqroute's process with each TCP carrier as
// BenchmarkE2E's -e2e.carriers does: the client speaks only that carrier
// (no fallback), so a round trip shows the carrier works end to end.
func TestProcessCarriers(t *testing.T) {
	for _, carrier := range []string{"h2", "h1"} {
		t.Run(carrier, func(t *testing.T) {
			env, err := e2e.StartProcess(e2e.Masqroute, e2e.ProcessConfig{CPU: -1, Carrier: carrier})
			require.NoError(t, err)
			defer func() { require.NoError(t, env.Close()) }()
			res, err := env.Run(context.Background(), loadgen.Config{
				Tunnels: 4, Conns: 2, Size: 1200, Window: 4,
				Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, Drain: 100 * time.Millisecond,
			})
			require.NoError(t, err)
			require.Positive(t, res.Received, "no datagram came back over %s", carrier)
			require.Zero(t, res.SendErrors)
		})
	}
}
