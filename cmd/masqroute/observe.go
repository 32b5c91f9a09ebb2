package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/google/gops/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/masqroute/masqroute/engine/metrics"
	"github.com/masqroute/masqroute/engine/proxy"
)

// observer serves what lets a person look inside the daemon: Prometheus
// metrics, pprof, the tunnel list, and the gops agent. Each is optional;
// -debug-listen serves the first three on one listener.
type observer struct {
	log *slog.Logger // without a component: each server adds its own

	metricsSrv  *http.Server
	metricsAddr net.Addr // nil when off
	pprofSrv    *http.Server
	pprofAddr   net.Addr // nil when off
	debugSrv    *http.Server
	debugAddr   net.Addr // nil when off
	gops        bool     // the agent is listening

	wg sync.WaitGroup // one per http.Server.Serve
}

// startObserver binds the metrics, pprof and debug listeners (so a busy
// port fails the start) and starts the gops agent; a gops failure is only
// logged. extra are collectors registered beside the proxy's (build info,
// histograms).
func startObserver(cfg *serveConfig, p *proxy.Proxy, extra []prometheus.Collector, log *slog.Logger) (*observer, error) {
	o := &observer{log: log}
	if cfg.blockProfileRate > 0 {
		runtime.SetBlockProfileRate(cfg.blockProfileRate)
	}
	if cfg.mutexProfileFraction > 0 {
		runtime.SetMutexProfileFraction(cfg.mutexProfileFraction)
	}
	var metricsHandler http.Handler
	if cfg.metrics != "" || cfg.debugListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			metrics.NewCollector(p),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
		reg.MustRegister(extra...)
		metricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	}
	start := func(what, addr string, mux *http.ServeMux) (*http.Server, net.Addr, error) {
		srv, a, err := o.serveHTTP(what, addr, mux)
		if err != nil {
			o.close(context.Background())
		}
		return srv, a, err
	}
	var err error
	if cfg.metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler)
		if o.metricsSrv, o.metricsAddr, err = start("metrics", cfg.metrics, mux); err != nil {
			return nil, err
		}
	}
	if cfg.pprof != "" {
		mux := http.NewServeMux()
		handlePprof(mux)
		if o.pprofSrv, o.pprofAddr, err = start("pprof", cfg.pprof, mux); err != nil {
			return nil, err
		}
	}
	if cfg.debugListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler)
		handlePprof(mux)
		mux.Handle("/debug/tunnels", tunnelsHandler(p))
		if o.debugSrv, o.debugAddr, err = start("debug-listen", cfg.debugListen, mux); err != nil {
			return nil, err
		}
	}
	if cfg.gops {
		// The daemon handles signals itself: no ShutdownCleanup, which
		// would exit the process on SIGINT.
		if err := agent.Listen(agent.Options{Addr: "127.0.0.1:0"}); err != nil {
			log.Warn("agent not started", "component", "gops", "error", err)
		} else {
			o.gops = true
		}
	}
	return o, nil
}

// handlePprof mounts net/http/pprof under /debug/pprof/ on mux (its own
// mux: importing net/http/pprof also registers the handlers on
// http.DefaultServeMux, which nothing here serves).
func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// serveHTTP listens on addr and serves h there on its own goroutine.
func (o *observer) serveHTTP(what, addr string, h http.Handler) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("-%s: %w", what, err)
	}
	log := o.log.With("component", what)
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		log.Warn("listens beyond loopback: whoever reaches it can read it", "addr", ln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	o.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server failed", "error", err)
		}
	})
	return srv, ln.Addr(), nil
}

// close stops the HTTP servers (letting requests in flight finish within
// ctx, then cutting them) and the gops agent.
func (o *observer) close(ctx context.Context) {
	for _, srv := range []*http.Server{o.metricsSrv, o.pprofSrv, o.debugSrv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close() // a long profile or trace request
		}
	}
	o.wg.Wait()
	if o.gops {
		agent.Close()
		o.gops = false
	}
}

// metricsURL is where metrics are scraped, "" when off.
func (o *observer) metricsURL() string {
	if o.metricsAddr == nil {
		return ""
	}
	return "http://" + dialable(o.metricsAddr.String()) + "/metrics"
}

// debugURL is the -debug-listen root, "" when off.
func (o *observer) debugURL() string {
	if o.debugAddr == nil {
		return ""
	}
	return "http://" + dialable(o.debugAddr.String()) + "/"
}

// pprofURL is the pprof index, "" when off.
func (o *observer) pprofURL() string {
	if o.pprofAddr == nil {
		return ""
	}
	return "http://" + dialable(o.pprofAddr.String()) + "/debug/pprof/"
}

// dialable turns a listen address into one a local client can dial: an
// unspecified host becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		if err == nil && a.Is6() && !a.Is4In6() {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
