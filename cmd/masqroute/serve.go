package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/metrics"
	"github.com/masqroute/masqroute/engine/proxy"
)

// daemon is a running proxy and what serves beside it.
type daemon struct {
	cfg  *serveConfig
	log  *slog.Logger // component=daemon
	base *slog.Logger // without a component, for the others

	proxy      *proxy.Proxy
	ln         *quic.Listener // the first transport's listener, for its address
	transports *transportSet  // every transport and listener (listen_transports.go)
	served     chan error     // Serve's results, one per listener
	tcp        *tcpCarriers   // -h2, -h1 (listen_tcp.go)

	certs       *certStore
	caFile      string // self-signed certificate's CA, PEM; "" with -cert
	removeCA    bool   // caFile is ours to remove on exit
	reloadSteps []reloadStep

	obs     *observer
	echo    *echo.Server // -dev only
	ipHosts string       // the netstack host's addresses, when CONNECT-IP runs on netstack
}

// runServe runs the daemon until ctx is done, then shuts it down.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, buildVersion())
		return nil
	}
	if cfg.printConfig {
		return writeConfig(stdout, cfg.flags)
	}
	defer cfg.gc.apply()()
	base, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		return err
	}
	routeStdLog(base)
	log := base.With("component", "daemon")
	d := &daemon{cfg: cfg, log: log, base: base}
	if err := d.start(); err != nil {
		d.close(context.Background())
		return err
	}
	// Before "started": from then on a SIGHUP reloads, never kills.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	gcPercent, memLimit := cfg.gc.logValues()
	log.Info("started", "listen", d.ln.Addr().String(), "metrics", d.obs.metricsURL(),
		"pprof", d.obs.pprofURL(), "debug", d.obs.debugURL(), "gops", d.obs.gops, "dev", cfg.dev, "version", buildVersion(),
		"workers", cfg.workers, "gc_percent", gcPercent, "memory_limit", memLimit)
	if cfg.dev {
		d.printBanner(stdout)
	}

	var serveErr error
wait:
	for {
		select {
		case <-hup:
			d.reload()
		case <-ctx.Done():
			log.Info("shutting down", "timeout", cfg.shutdownTimeout)
			break wait
		case serveErr = <-d.served:
			d.served <- serveErr // for close
			log.Error("stopped serving", "error", serveErr)
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	d.close(sctx)
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// start sets everything up: certificate, proxy, QUIC listener, metrics,
// pprof and gops, and the echo target in -dev mode. On error, close undoes
// what was done.
func (d *daemon) start() error {
	cfg := d.cfg
	pol, err := cfg.targetPolicy()
	if err != nil {
		return err
	}
	if cfg.dev {
		d.log.Warn("dev mode: tunnels may reach LOOPBACK targets on this host", "allow", loopbackTargets)
	}
	tlsConf, err := d.serverTLS()
	if err != nil {
		return err
	}
	ipCfg, err := cfg.ipConfig()
	if err != nil {
		return err
	}
	auth, err := d.loadAuth()
	if err != nil {
		if ipCfg != nil {
			ipCfg.Device.Close()
		}
		return err
	}
	pcfg := cfg.proxyConfig(pol, ipCfg, auth, d.base.With("component", "proxy"))
	tl := newTunnelLog(d.base, cfg.tunnelLogRate)
	setup := metrics.NewTunnelSetup()
	pcfg.Hooks = proxy.Hooks{TunnelEnded: tl.ended, Refused: tl.refused, TunnelSetup: setup.Observe}
	version, rev, goVersion := buildInfo()
	collectors := []prometheus.Collector{metrics.NewBuildInfo(version, rev, goVersion), setup}
	d.proxy, err = proxy.New(pcfg)
	if err != nil {
		if ipCfg != nil {
			ipCfg.Device.Close()
		}
		return err
	}
	// Tunnels may not reach this host's own addresses (unless -allow names
	// them); the proxy reads them again on every interface change, and
	// SIGHUP does too.
	d.reloadSteps = append(d.reloadSteps, reloadStep{name: "host addresses", reload: func() error {
		if err := d.proxy.RefreshHostAddrs(); err != nil {
			return err
		}
		d.log.Info("host addresses refused as targets", "addrs", d.proxy.HostAddrs())
		return nil
	}})
	if ipCfg != nil {
		if cfg.ip == "netstack" {
			d.ipHosts = cfg.ipHosts
		}
		d.log.Info("CONNECT-IP on", "backend", cfg.ip, "pool4", cfg.ipPool4, "pool6", cfg.ipPool6, "templates", ipCfg.Templates)
	}
	tlsConf = d.proxy.TLSConfig(tlsConf) // -client-ca
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	var qconf *quic.Config
	if cfg.qlogDir != "" {
		if err := os.MkdirAll(cfg.qlogDir, 0o755); err != nil {
			return fmt.Errorf("-qlog: %w", err)
		}
		qconf = &quic.Config{Tracer: qlogTracer(cfg.qlogDir, d.base)}
		d.log.Warn("qlog on: a trace file per connection", "dir", cfg.qlogDir)
	}
	if err := d.listen(tlsConf, qconf); err != nil { // serves on every transport
		return fmt.Errorf("listen %s: %w", cfg.listen, err)
	}
	collectors = append(collectors, d.transports.collectors()...)
	if err := d.listenTCP(tlsConf); err != nil { // -h2, -h1 (listen_tcp.go)
		return err
	}

	if d.obs, err = startObserver(cfg, d.proxy, collectors, d.base); err != nil {
		return err
	}
	if cfg.dev {
		if d.echo, err = echo.Listen("127.0.0.1:0"); err != nil {
			return fmt.Errorf("echo target: %w", err)
		}
		d.base.Info("started", "component", "echo", "addr", d.echo.Addr())
	}
	return nil
}

// serverTLS loads -cert and -key, which SIGHUP reloads, or makes a
// self-signed certificate and writes its CA where clients can read it.
func (d *daemon) serverTLS() (*tls.Config, error) {
	cfg := d.cfg
	log := d.base.With("component", "tls")
	if cfg.cert != "" {
		certs, err := loadCertStore(cfg.cert, cfg.key)
		if err != nil {
			return nil, fmt.Errorf("load certificate: %w", err)
		}
		d.certs = certs
		logCert := func(msg string) {
			leaf := certs.leaf()
			log.Info(msg, "cert", cfg.cert, "subject", leaf.Subject.String(), "dns", leaf.DNSNames,
				"ips", leaf.IPAddresses, "not_after", leaf.NotAfter)
		}
		logCert("serving certificate")
		d.reloadSteps = append(d.reloadSteps, reloadStep{name: "certificate", reload: func() error {
			if err := certs.load(); err != nil {
				return err
			}
			logCert("serving reloaded certificate")
			return nil
		}})
		return certs.serverTLS(), nil
	}
	if !cfg.selfSigned {
		return nil, errNoCert // parseServeFlags refuses this already
	}
	hosts, err := certHosts(cfg.listen)
	if err != nil {
		return nil, err
	}
	var ca *selfSignedCA
	if cfg.devDir != "" {
		dir, err := filepath.Abs(cfg.devDir) // the banner's client command works from anywhere
		if err != nil {
			return nil, fmt.Errorf("-dev-dir: %w", err)
		}
		var made bool
		if ca, made, err = loadOrMakeCA(dir); err != nil {
			return nil, err
		}
		d.caFile = filepath.Join(dir, caCertFileName)
		if made {
			log.Info("made a CA and kept it for the next start", "ca", d.caFile)
		}
	} else {
		if ca, err = newSelfSignedCA(); err != nil {
			return nil, fmt.Errorf("self-signed CA: %w", err)
		}
		if err := d.writeCA(ca.pem); err != nil {
			return nil, err
		}
	}
	leaf, err := ca.issue(hosts)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	d.certs = staticCertStore(leaf)
	log.Info("self-signed certificate made; clients trust its CA with -ca", "hosts", hosts, "ca", d.caFile)
	return d.certs.serverTLS(), nil
}

// writeCA writes a per-process CA to -write-ca, or to a temporary file
// removed on exit.
func (d *daemon) writeCA(pem []byte) error {
	if d.cfg.writeCA != "" {
		if err := os.WriteFile(d.cfg.writeCA, pem, 0o644); err != nil {
			return fmt.Errorf("-write-ca: %w", err)
		}
		d.caFile = d.cfg.writeCA
		return nil
	}
	f, err := os.CreateTemp("", "masqroute-ca-*.pem")
	if err != nil {
		return fmt.Errorf("CA file: %w", err)
	}
	d.caFile, d.removeCA = f.Name(), true
	_, err = f.Write(pem)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("CA file: %w", err)
	}
	return nil
}

// certHosts are the names a self-signed certificate is made for: the listen
// host and localhost, or every loopback name when the host is unspecified
// (the proxy answers on every address then).
func certHosts(listen string) ([]string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		hosts := []string{"127.0.0.1", "::1", "localhost"}
		if name, err := os.Hostname(); err == nil && name != "" && name != "localhost" {
			hosts = append(hosts, name)
		}
		return hosts, nil
	}
	if host == "localhost" {
		return []string{"localhost", "127.0.0.1", "::1"}, nil
	}
	return []string{host, "localhost"}, nil
}

// close stops everything start started, in order: the proxy drains first
// (within ctx) while metrics still answer, then the observers, the echo
// target and the CA file go. It may be called on a half-started daemon.
func (d *daemon) close(ctx context.Context) {
	if d.proxy != nil {
		if err := d.proxy.Shutdown(ctx); err != nil {
			d.log.Warn("tunnels cut short by the shutdown timeout", "error", err)
		}
	}
	d.closeTCP()
	d.closeTransports()
	if d.obs != nil {
		d.obs.close(ctx)
	}
	if d.echo != nil {
		d.echo.Close()
	}
	if d.removeCA {
		if err := os.Remove(d.caFile); err != nil {
			d.log.Warn("could not remove the CA file", "file", d.caFile, "error", err)
		}
	}
}
