package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/proxy"
)

// Bounds on a proxy process's life.
const (
	processStartTimeout = 30 * time.Second // until it prints its addresses
	processStopTimeout  = 10 * time.Second // from stdin closed to SIGKILL
	controlTimeout      = 5 * time.Second  // one control request
)

// ProcessConfig is how StartProcess starts a proxy process.
type ProcessConfig struct {
	// Exe is the binary to run: one that calls ChildMain first thing when
	// IsChild (BenchmarkE2E's test binary does, in TestMain). Default: this
	// process's own executable.
	Exe string
	// CPU pins the process to this CPU; -1 leaves it unpinned.
	CPU int
	// CPUProfile, if set, is where the process writes a CPU profile of
	// the measured interval (from the Probe's first Read to its second).
	CPUProfile string
	// Env is added to the process's environment, KEY=VALUE each: GOGC
	// and GOMEMLIMIT, say, to measure the proxy under another garbage
	// collector setting.
	Env []string
	// CountSyscalls opens perf syscall counters on the process
	// (SyscallCounters); where that fails, Process.SyscallsErr says why and
	// the run goes on without them.
	CountSyscalls bool
	// Transports is the server's ServerConfig.Transports.
	Transports int
	// Carrier is the server's ServerConfig.Carrier; the Env's client uses
	// it too.
	Carrier string
	// Affinity is the server's ServerConfig.Affinity.
	Affinity bool
}

// A Process is a proxy running in a process of its own (see ChildMain),
// and what the benchmark reads of it: its /proc statistics, its syscall
// counters, its control server.
type Process struct {
	Impl Impl
	PID  int
	// Addr is the address clients dial.
	Addr string
	// Pinned is the CPU the process is pinned to, or -1.
	Pinned int
	// TLS trusts the process's certificate.
	TLS *tls.Config
	// Syscalls counts the process's syscalls; nil when not counted, and
	// SyscallsErr then says why (nil if not asked for).
	Syscalls    *SyscallCounters
	SyscallsErr error

	cfg     ProcessConfig
	control string // base URL of the control server
	cmd     *exec.Cmd
	stdin   *os.File
	waitOut sync.WaitGroup // the stdout reader
	http    *http.Client
	tr      *http.Transport

	closeOnce sync.Once
	closeErr  error

	mu    sync.Mutex // guards snaps
	snaps []Snapshot
}

// ProcStats are a process's counters from /proc.
type ProcStats struct {
	CPU         time.Duration // user + system
	CtxSwitches uint64        // voluntary + involuntary, all threads
	RSS         uint64        // resident set size now, bytes
	PeakRSS     uint64        // the largest RSS so far, bytes
}

// A Snapshot is what the Process's Probe read at one point.
type Snapshot struct {
	At time.Time
	ProcStats
	// Syscalls by name, "" for all (nil when not counted).
	Syscalls map[string]uint64
	// Metrics are the masqroute_datapath_* series of /metrics.
	Metrics map[string]Sample
}

// A Sample is one series of the Prometheus text format.
type Sample struct {
	Type  string // the family's TYPE: counter, gauge, histogram, summary, untyped
	Value float64
}

var (
	liveMu sync.Mutex
	live   = make(map[*Process]bool)
)

// CloseProcesses closes every Process not yet closed; a TestMain calls it
// after the tests, so that a failed benchmark leaves no child behind.
func CloseProcesses() error {
	liveMu.Lock()
	ps := make([]*Process, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// StartProcess starts impl's server in a process of its own (cfg) and the
// echo target in this one, and returns the Env that drives them.
func StartProcess(impl Impl, cfg ProcessConfig) (_ *Env, err error) {
	e := &Env{Impl: impl}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	p, err := startProcess(impl, cfg)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, p.Close)
	e.Process, e.Addr = p, p.Addr
	e.Probes = append(e.Probes, p.Probe())
	if impl == RawQUIC {
		e.Transport = &loadgen.RawQUIC{Addr: p.Addr, TLS: p.TLS.Clone(), QUIC: QUICConfig()}
	} else {
		e.Transport = &loadgen.MASQUE{Proxy: p.Addr, TLS: p.TLS.Clone(), QUIC: QUICConfig(), Carrier: cfg.Carrier}
	}
	if err := e.startTarget(); err != nil {
		return nil, err
	}
	return e, nil
}

func startProcess(impl Impl, cfg ProcessConfig) (_ *Process, err error) {
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	child, err := json.Marshal(ChildConfig{Impl: impl, CPU: cfg.CPU, CPUProfile: cfg.CPUProfile, Transports: cfg.Transports, Carrier: cfg.Carrier, Affinity: cfg.Affinity})
	if err != nil {
		return nil, err
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, err
	}
	// *os.File ends: exec starts no copying goroutines.
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), cfg.Env...), ChildEnv+"="+string(child))
	if cfg.Carrier == "h2" {
		// net/http's HTTP/2 server takes extended CONNECT only with this
		// setting, read once at start (proxy.ExtendedConnectEnabled).
		cmd.Env = withGODEBUG(cmd.Env, proxy.ExtendedConnectEnv)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, os.Stderr
	err = cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		return nil, err
	}
	tr := &http.Transport{}
	p := &Process{
		Impl: impl, PID: cmd.Process.Pid, Pinned: -1,
		cfg: cfg, cmd: cmd, stdin: stdinW,
		tr: tr, http: &http.Client{Transport: tr, Timeout: controlTimeout},
	}
	liveMu.Lock()
	live[p] = true
	liveMu.Unlock()
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	// The first line is the child's addresses; the rest is drained until
	// the child exits (Close waits for that).
	ready := make(chan string, 1)
	p.waitOut.Go(func() {
		defer stdoutR.Close()
		sc := bufio.NewScanner(stdoutR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			if first {
				ready <- sc.Text()
				first = false
			}
		}
		close(ready)
	})
	var line string
	t := time.NewTimer(processStartTimeout)
	defer t.Stop()
	select {
	case l, ok := <-ready:
		if !ok {
			return nil, fmt.Errorf("e2e: %s process exited before it was ready", impl)
		}
		line = l
	case <-t.C:
		return nil, fmt.Errorf("e2e: %s process not ready after %v", impl, processStartTimeout)
	}
	if err := p.parseReady(line); err != nil {
		return nil, err
	}
	if cfg.CountSyscalls {
		p.Syscalls, p.SyscallsErr = OpenSyscallCounters(p.PID)
	}
	return p, nil
}

// parseReady reads the child's "e2e-child k=v ..." line.
func (p *Process) parseReady(line string) error {
	rest, ok := strings.CutPrefix(line, "e2e-child ")
	if !ok {
		return fmt.Errorf("e2e: unexpected first line from the %s process: %q", p.Impl, line)
	}
	kv := make(map[string]string)
	for _, f := range strings.Fields(rest) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	pem, err := base64.StdEncoding.DecodeString(kv["cert"])
	if err != nil {
		return fmt.Errorf("e2e: certificate from the %s process: %w", p.Impl, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("e2e: no certificate from the %s process", p.Impl)
	}
	p.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	p.Addr, p.control = kv["addr"], kv["control"]
	if p.Addr == "" || p.control == "" {
		return fmt.Errorf("e2e: addresses missing from the %s process's line %q", p.Impl, line)
	}
	if p.Pinned, err = strconv.Atoi(kv["pinned"]); err != nil {
		return fmt.Errorf("e2e: pinned in %q: %w", line, err)
	}
	return nil
}

// Snapshots are what the Probe read, in order.
func (p *Process) Snapshots() []Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Snapshot(nil), p.snaps...)
}

// Probe reads the process's hop and drop counters for loadgen, and keeps a
// Snapshot of its /proc statistics, syscall counters and
// masqroute_datapath_* series each time (Snapshots). Read at the start of
// the measured interval and after the drain, the two snapshots bound the
// same span as the hop counts. With ProcessConfig.CPUProfile, the first
// Read starts the process's CPU profile and the second stops it.
func (p *Process) Probe() loadgen.Probe {
	return loadgen.ProbeFunc(func(ctx context.Context) (loadgen.Counters, error) {
		p.mu.Lock()
		n := len(p.snaps)
		p.mu.Unlock()
		if p.cfg.CPUProfile != "" && n == 1 {
			if err := p.post(ctx, "/profile/stop"); err != nil {
				return loadgen.Counters{}, err
			}
		}
		var c loadgen.Counters
		if err := p.get(ctx, "/counters", func(r io.Reader) error { return json.NewDecoder(r).Decode(&c) }); err != nil {
			return c, err
		}
		var s Snapshot
		if err := p.get(ctx, "/metrics", func(r io.Reader) (err error) {
			s.Metrics, err = parseDatapathMetrics(r)
			return err
		}); err != nil {
			return c, err
		}
		st, err := readProcStats(p.PID)
		if err != nil {
			return c, err
		}
		s.At, s.ProcStats = time.Now(), st
		if p.Syscalls != nil {
			if s.Syscalls, err = p.Syscalls.Read(); err != nil {
				return c, err
			}
		}
		p.mu.Lock()
		p.snaps = append(p.snaps, s)
		p.mu.Unlock()
		if p.cfg.CPUProfile != "" && n == 0 {
			if err := p.post(ctx, "/profile/start"); err != nil {
				return c, err
			}
		}
		return c, nil
	})
}

func (p *Process) get(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.control+path, nil)
	if err != nil {
		return err
	}
	return p.do(req, read)
}

func (p *Process) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.control+path, nil)
	if err != nil {
		return err
	}
	return p.do(req, nil)
}

func (p *Process) do(req *http.Request, read func(io.Reader) error) error {
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("e2e: %s process: %w", p.Impl, err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 16<<20)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(body, 1024))
		return fmt.Errorf("e2e: %s process: %s %s: %s: %s", p.Impl, req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if read != nil {
		return read(body)
	}
	_, err = io.Copy(io.Discard, body)
	return err
}

// Close stops the process: stdin closed, then SIGKILL if it has not exited
// after processStopTimeout; it waits for it in either case. It returns an
// error if the process did not exit by itself with status 0.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		p.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		t := time.NewTimer(processStopTimeout)
		select {
		case p.closeErr = <-done:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-done
			p.closeErr = fmt.Errorf("e2e: %s process did not stop in %v; killed", p.Impl, processStopTimeout)
		}
		t.Stop()
		p.waitOut.Wait()
		if p.Syscalls != nil {
			p.Syscalls.Close()
		}
		p.tr.CloseIdleConnections()
		if p.closeErr != nil {
			p.closeErr = fmt.Errorf("e2e: %s process: %w", p.Impl, p.closeErr)
		}
		liveMu.Lock()
		delete(live, p)
		liveMu.Unlock()
	})
	return p.closeErr
}

// parseDatapathMetrics reads the masqroute_datapath_* series of the
// Prometheus text format, keyed by name and labels without quotes
// (masqroute_datapath_syscalls_total{hop=to_target}); histogram buckets and
// summary quantiles are left out (their _sum and _count are kept).
func parseDatapathMetrics(r io.Reader) (map[string]Sample, error) {
	const prefix = "masqroute_datapath_"
	types := make(map[string]string)
	out := make(map[string]Sample)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(f, " "); ok {
				types[name] = strings.TrimSpace(typ)
			}
			continue
		}
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		series, value := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, value = line[:i+1], line[i+1:]
		} else if j := strings.IndexByte(line, ' '); j >= 0 {
			series, value = line[:j], line[j:]
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		if strings.HasSuffix(name, "_bucket") || strings.Contains(labels, "quantile=") {
			continue
		}
		typ := types[name]
		if typ == "" {
			for _, suf := range []string{"_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suf); ok && types[base] != "" {
					typ = types[base]
				}
			}
		}
		key := strings.NewReplacer(`"`, "", " ", "_").Replace(series)
		out[key] = Sample{Type: first(typ, "untyped"), Value: v}
	}
	return out, sc.Err()
}

// MetricUnit is the benchmark unit of a series parseDatapathMetrics keyed:
// "dp-" and the name without its prefix and _total, then the label values
// in order, words joined by "-", so that each label set reads as a metric
// of its own: masqroute_datapath_wakeups_total{goroutine=worker} is
// dp-wakeups-worker, masqroute_datapath_syscalls_total{direction=to_target}
// dp-syscalls-to-target.
func MetricUnit(series string) string {
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	name = strings.TrimPrefix(name, "masqroute_datapath_")
	parts := []string{"dp", strings.TrimSuffix(name, "_total")}
	for kv := range strings.SplitSeq(labels, ",") {
		if _, v, ok := strings.Cut(kv, "="); ok && v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '_' || r == ' ' || r == '/':
			return '-'
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, strings.Join(parts, "-"))
}

func first(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// withGODEBUG returns env with setting added to its GODEBUG (the last
// GODEBUG entry is the one a process sees).
func withGODEBUG(env []string, setting string) []string {
	godebug := setting
	for _, kv := range env {
		if old, ok := strings.CutPrefix(kv, "GODEBUG="); ok && old != "" {
			godebug = old + "," + setting
		}
	}
	return append(env, "GODEBUG="+godebug)
}
