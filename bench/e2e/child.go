package e2e

// The proxy process: the child half of StartProcess. A benchmark binary
// re-executes itself with ChildEnv set; its TestMain calls ChildMain first,
// which serves one server until stdin closes or SIGTERM arrives. Protocol,
// one line on stdout once it is listening:
//
//	e2e-child addr=127.0.0.1:P control=http://127.0.0.1:Q pinned=CPU cert=BASE64PEM
//
// pinned is the CPU the process runs on, or -1 where it is not pinned (one
// CPU, no affinity call, or a failed one: the reason goes to stderr). The
// control server answers
//
//	GET  /counters       loadgen.Counters of the server's hops and drops, JSON
//	GET  /metrics        Prometheus text: masqroute's own collector (the
//	                     masqroute_* series a daemon serves), empty otherwise
//	POST /profile/start  start a CPU profile into ChildConfig.CPUProfile
//	POST /profile/stop   stop it
//	POST /gc, GET /runtime, GET /debug/pprof/{profile}
//	                     the Go runtime's view: see childruntime.go
//
// Everything else the child says goes to stderr.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/metrics"
)

// ChildEnv is the environment variable that turns a binary whose TestMain
// (or main) calls ChildMain into a proxy process; its value is a ChildConfig
// in JSON.
const ChildEnv = "MASQROUTE_E2E_CHILD"

// ChildConfig is what a proxy process runs.
type ChildConfig struct {
	Impl Impl `json:"impl"`
	// CPU pins every thread of the process to this CPU and sets
	// GOMAXPROCS to 1; -1 leaves the process unpinned.
	CPU int `json:"cpu"`
	// CPUProfile is the file /profile/start writes to ("": profiling
	// refused).
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Transports is the server's ServerConfig.Transports.
	Transports int `json:"transports,omitempty"`
	// Carrier is the server's ServerConfig.Carrier.
	Carrier string `json:"carrier,omitempty"`
	// Affinity is the server's ServerConfig.Affinity.
	Affinity bool `json:"affinity,omitempty"`
}

// IsChild reports whether this process was started as a proxy process.
func IsChild() bool { return os.Getenv(ChildEnv) != "" }

// ChildMain runs the proxy process ChildEnv describes and returns the
// process's exit code; call it only when IsChild.
func ChildMain() int {
	var cfg ChildConfig
	if err := json.Unmarshal([]byte(os.Getenv(ChildEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "e2e-child: %s: %v\n", ChildEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Stdin closing is the parent saying stop (or dying).
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := runChild(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "e2e-child:", err)
		return 1
	}
	return 0
}

func runChild(ctx context.Context, cfg ChildConfig, out io.Writer) error {
	pinned := -1
	if cfg.CPU >= 0 {
		if err := PinProcess(cfg.CPU); err != nil {
			fmt.Fprintf(os.Stderr, "e2e-child: running unpinned: %v\n", err)
		} else {
			pinned = cfg.CPU
			runtime.GOMAXPROCS(1)
		}
	}
	env, err := StartServerWith(cfg.Impl, ServerConfig{Transports: cfg.Transports, Carrier: cfg.Carrier, Affinity: cfg.Affinity})
	if err != nil {
		return err
	}
	defer env.Close()
	c, err := Cert()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctl := &control{env: env, profile: cfg.CPUProfile}
	srv := &http.Server{Handler: ctl.mux(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		srv.Close()
		wg.Wait()
		ctl.stopProfile()
	}()
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "e2e-child addr=%s control=http://%s pinned=%d cert=%s\n",
		env.Addr, ln.Addr(), pinned, base64.StdEncoding.EncodeToString(c.PEM))
	if err := w.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// control is the proxy process's control server.
type control struct {
	env     *Env
	profile string

	mu      sync.Mutex // guards prof
	prof    *os.File   // the CPU profile being written, or nil
	promReg *prometheus.Registry
}

func (c *control) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /counters", c.serveCounters)
	c.promReg = prometheus.NewRegistry()
	if c.env.Proxy != nil {
		c.promReg.MustRegister(metrics.NewCollector(c.env.Proxy))
	}
	m.Handle("GET /metrics", promhttp.HandlerFor(c.promReg, promhttp.HandlerOpts{}))
	m.HandleFunc("POST /profile/start", func(w http.ResponseWriter, _ *http.Request) { httpErr(w, c.startProfile()) })
	m.HandleFunc("POST /profile/stop", func(w http.ResponseWriter, _ *http.Request) { httpErr(w, c.stopProfile()) })
	runtimeRoutes(m)
	return m
}

func httpErr(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// serveCounters sums the server's probes (the echo target is the parent's).
func (c *control) serveCounters(w http.ResponseWriter, r *http.Request) {
	var all loadgen.Counters
	for _, p := range c.env.Probes {
		pc, err := p.Read(r.Context())
		if err != nil {
			httpErr(w, err)
			return
		}
		all.Hops = append(all.Hops, pc.Hops...)
		if all.Drops == nil {
			all.Drops = make(map[string]uint64)
		}
		for k, v := range pc.Drops {
			all.Drops[k] += v
		}
		if all.DataPath == nil && pc.DataPath != nil {
			all.DataPath = make(map[string]uint64)
		}
		for k, v := range pc.DataPath {
			all.DataPath[k] += v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(all)
}

func (c *control) startProfile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.profile == "" {
		return errors.New("no profile file configured")
	}
	if c.prof != nil {
		return errors.New("profile already running")
	}
	f, err := os.Create(c.profile)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	c.prof = f
	return nil
}

func (c *control) stopProfile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prof == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := c.prof.Close()
	c.prof = nil
	return err
}
