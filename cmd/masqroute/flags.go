package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// The daemon's bounds on what all clients together may hold; the engine's
// zero values mean unlimited, which a reachable daemon must not be. A
// tunnel costs a few KiB idle (its ring, its socket's batch arrays) and a
// connection tens of KiB (quic-go's state, its h3 goroutines), so these
// stay within a few hundred MiB.
const (
	defaultMaxConns   = 10_000
	defaultMaxTunnels = 100_000
)

// serveConfig is the daemon's command line.
type serveConfig struct {
	version     bool
	configFile  string        // -config (config.go)
	printConfig bool          // -print-config
	flags       *flag.FlagSet // the parsed flags, for -print-config
	listen      string
	cert        string
	key         string
	selfSigned  bool
	writeCA     string
	devDir      string
	template    string

	maxTunnelsPerConn int
	maxTunnels        int
	maxConns          int
	maxConnsPerAddr   int
	newConnsPerAddr   float64
	initTimeout       time.Duration
	headerTimeout     time.Duration
	idleTimeout       time.Duration
	resolveTimeout    time.Duration
	maxDatagram       int
	maxCapsule        int
	maxAmp            int
	ampAllowance      int
	rateTunnelDgrams  int64
	rateTunnelBytes   int64
	rateConnDgrams    int64
	rateConnBytes     int64
	rateBurst         time.Duration
	ringSize          int
	pendingBuffer     int
	holdMax           int
	holdTimeout       time.Duration
	workers           int
	gc                gcConfig
	scale             scaleConfig // listen_transports.go

	// Authentication (auth.go).
	authTokens           string
	clientCA             string
	allowUnauthenticated bool

	allow, deny           string
	allowPorts, denyPorts string

	metrics string
	pprof   string
	gops    bool

	// Observability (observe.go, tunnellog.go).
	debugListen          string
	blockProfileRate     int
	mutexProfileFraction int
	qlogDir              string
	tunnelLogRate        float64

	logLevel        slog.Level
	logFormat       string
	shutdownTimeout time.Duration
	dev             bool
	h2, h1          bool // TCP carriers (listen_tcp.go)

	connectTCP bool // CONNECT for TCP (on with -dev)

	// CONNECT-IP
	ip          string // "", "netstack" or "tun"
	ipTUN       string
	ipMTU       int
	ipPool4     string
	ipPool6     string
	ipReachable string
	ipTemplates string
	ipHosts     string
}

// parseServeFlags parses the daemon's flags.
func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("masqroute", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText, "\nProxy flags:\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&c.version, "version", false, "print the version, commit and Go version, and exit")
	fs.StringVar(&c.configFile, "config", "", "TOML `file` of settings, one key per flag (listen = \"0.0.0.0:443\"); flags on the command line win.\n"+
		"Read at start only: SIGHUP does not read it again")
	fs.BoolVar(&c.printConfig, "print-config", false, "print the effective configuration as a -config file, and exit")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4433", "UDP `address` to serve QUIC on (port 0: any free port)")
	fs.StringVar(&c.cert, "cert", "", "TLS certificate chain, PEM `file` (with -key); both are read again on SIGHUP")
	fs.StringVar(&c.key, "key", "", "TLS private key, PEM `file`")
	fs.BoolVar(&c.selfSigned, "self-signed", false, "no -cert: make a CA and a certificate it signs at start; clients trust the CA with -ca\n"+
		"(-dev does this unless -cert is given)")
	fs.StringVar(&c.writeCA, "write-ca", "", "with a self-signed certificate: write its CA to this PEM `file` for clients to trust\n"+
		"(default: a new file in the temporary directory, removed on exit)")
	fs.StringVar(&c.devDir, "dev-dir", "", "with a self-signed certificate: keep its CA in this `directory` (ca.pem, ca-key.pem), made\n"+
		"once and reused, so a client's -ca DIR/ca.pem stays good across restarts (make run: .dev)")
	fs.StringVar(&c.template, "template", proxy.DefaultUDPTemplate, "CONNECT-UDP URI `template` (RFC 9298)")
	fs.IntVar(&c.maxTunnelsPerConn, "max-tunnels-per-conn", proxy.DefaultMaxTunnelsPerConn, "tunnels per connection, pending and open (negative: unlimited)")
	fs.IntVar(&c.maxTunnels, "max-tunnels", defaultMaxTunnels, "tunnels across all connections (0: unlimited)")
	fs.IntVar(&c.maxConns, "max-conns", defaultMaxConns, "concurrent connections, handshakes under way counting; more are refused before their handshake (0: unlimited)")
	fs.IntVar(&c.maxConnsPerAddr, "max-conns-per-addr", proxy.DefaultMaxConnsPerAddr, "concurrent connections from one client address (IPv4, or IPv6 /64), refused before the\n"+
		"handshake (negative: unlimited)")
	fs.Float64Var(&c.newConnsPerAddr, "new-conns-per-addr", proxy.DefaultNewConnsPerAddr, "new connections per second from one client address, burst twice that; past half the burst\n"+
		"a client is asked for a Retry first, past it refused (negative: unlimited)")
	fs.DurationVar(&c.headerTimeout, "header-timeout", proxy.DefaultHeaderTimeout, "bound on a new stream's request head, and on a request's wait for the client's SETTINGS")
	fs.DurationVar(&c.initTimeout, "init-timeout", engine.DefaultInitTimeout, "bound on setting a tunnel up")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", proxy.DefaultTunnelIdleTimeout, "close a tunnel idle this long both ways (negative: never)")
	fs.DurationVar(&c.resolveTimeout, "resolve-timeout", proxy.DefaultResolveTimeout, "bound on one target name lookup")
	fs.IntVar(&c.maxDatagram, "max-datagram", proxy.DefaultMaxDatagramPayload, "largest UDP payload carried either way, in `bytes`; larger ones are dropped and counted")
	fs.IntVar(&c.maxCapsule, "max-capsule", proxy.DefaultMaxCapsule, "largest capsule value in `bytes`; a larger one resets its stream")
	fs.IntVar(&c.maxAmp, "max-amplification", proxy.DefaultMaxAmplification, "per connection and second: wire bytes toward targets at most this many times the QUIC bytes\n"+
		"the client sent (plus -amplification-allowance); the rest is dropped and counted (negative: no bound)")
	fs.IntVar(&c.ampAllowance, "amplification-allowance", proxy.DefaultAmplificationAllowance, "wire `bytes` toward targets a connection may send per second besides")
	fs.Int64Var(&c.rateTunnelDgrams, "rate-tunnel-dgrams", proxy.DefaultRateTunnelDatagrams, "datagrams per second one tunnel may send toward its target; more are dropped and counted (negative: no limit)")
	fs.Int64Var(&c.rateTunnelBytes, "rate-tunnel-bytes", proxy.DefaultRateTunnelBytes, "payload `bytes` per second one tunnel may send toward its target (negative: no limit)")
	fs.Int64Var(&c.rateConnDgrams, "rate-conn-dgrams", proxy.DefaultRateConnDatagrams, "datagrams per second all tunnels of one connection may send together (negative: no limit)")
	fs.Int64Var(&c.rateConnBytes, "rate-conn-bytes", proxy.DefaultRateConnBytes, "payload `bytes` per second all tunnels of one connection may send together (negative: no limit)")
	fs.DurationVar(&c.rateBurst, "rate-burst", proxy.DefaultRateBurst, "depth of every -rate-* bucket, as time at its rate")
	fs.IntVar(&c.ringSize, "ring-size", engine.DefaultRingSize, "datagrams queued per tunnel toward its target (rounded up to a power of two); more are dropped and counted")
	fs.IntVar(&c.pendingBuffer, "pending-buffer", engine.DefaultPendingBuffer, "datagrams held per tunnel while it is being set up (at most -ring-size); more are dropped and counted")
	fs.IntVar(&c.holdMax, "hold", proxy.DefaultHoldMax, "datagrams held per connection that arrive before their request (0: none)")
	fs.DurationVar(&c.holdTimeout, "hold-timeout", engine.DefaultHoldTimeout, "how long such a datagram waits for its request")
	fs.IntVar(&c.workers, "workers", engine.DefaultWorkers(), "executor worker goroutines that run every tunnel's datagrams; one per GOMAXPROCS by default")
	c.gc.flags(fs)
	c.scale.flags(fs)
	fs.StringVar(&c.authTokens, "auth-tokens", "", "bearer token `file`: one sha256:HEX hash a line (masqroute token makes them); tunnel requests\n"+
		"without a listed token get 407. Read again on SIGHUP")
	fs.StringVar(&c.clientCA, "client-ca", "", "PEM `file` of CAs client certificates must chain to (mTLS); a client without one fails the handshake")
	fs.BoolVar(&c.allowUnauthenticated, "allow-unauthenticated", false, "serve a non-loopback -listen address without -auth-tokens or -client-ca (an open proxy)")
	fs.StringVar(&c.allow, "allow", "", "comma-separated `CIDRs or addresses` tunnels may reach even if the built-in policy refuses them")
	fs.StringVar(&c.deny, "deny", "", "comma-separated `CIDRs or addresses` tunnels may never reach")
	fs.StringVar(&c.allowPorts, "allow-ports", "", "comma-separated target `ports or ranges` (53,443,1000-2000); empty: any")
	fs.StringVar(&c.denyPorts, "deny-ports", "", "comma-separated target `ports or ranges` to refuse")
	fs.StringVar(&c.metrics, "metrics", "127.0.0.1:9464", "TCP `address` serving Prometheus /metrics (empty: off)")
	fs.StringVar(&c.pprof, "pprof", "127.0.0.1:6060", "TCP `address` serving net/http/pprof under /debug/pprof/ (empty: off)")
	fs.BoolVar(&c.gops, "gops", false, "start the gops agent, which listens on a loopback port (go tool gops stack|stats|trace PID);\n"+
		"on by default with -dev only")
	fs.StringVar(&c.debugListen, "debug-listen", "", "TCP `address` serving /metrics, /debug/pprof/ and /debug/tunnels on one listener (empty: off)")
	fs.IntVar(&c.blockProfileRate, "block-profile-rate", 0, "runtime.SetBlockProfileRate: sample one blocking event per this many `nanoseconds` blocked (0: off)")
	fs.IntVar(&c.mutexProfileFraction, "mutex-profile-fraction", 0, "runtime.SetMutexProfileFraction: sample 1 in this many mutex contention events (0: off)")
	fs.StringVar(&c.qlogDir, "qlog", "", "write a qlog trace of every QUIC connection into this `directory` (heavy; for debugging)")
	fs.Float64Var(&c.tunnelLogRate, "tunnel-log-rate", 100, "at most this many `lines` a second of the one-per-tunnel INFO lines (tunnel ended, tunnel refused);\n"+
		"the rest are counted in the next line's suppressed (0: none)")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format` on stderr: text (key=value) or json, one record a line")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long open tunnels may go on before they are cut")
	fs.BoolVar(&c.dev, "dev", false, "development mode: self-signed certificate, LOOPBACK TARGETS ALLOWED, a local UDP echo target,\n"+
		"CONNECT-IP into a userspace network (unless -ip says otherwise), a banner")
	fs.BoolVar(&c.connectTCP, "connect-tcp", false, "serve CONNECT for TCP (RFC 9114 §4.4) under the same policy, auth and limits; on with -dev")
	fs.BoolVar(&c.h2, "h2", false, "also serve HTTP/2 (extended CONNECT, RFC 8441) on TCP, on -listen's port number, for clients\n"+
		"whose UDP is blocked (on by default with -dev)")
	fs.BoolVar(&c.h1, "h1", false, "also serve HTTP/1.1 Upgrade (RFC 9298 §3.2) on that TCP port (on by default with -dev)")
	fs.StringVar(&c.ip, "ip", "", "serve CONNECT-IP (RFC 9484) into this `backend`: netstack (a userspace network, no privileges)\n"+
		"or tun (a Linux TUN interface; needs CAP_NET_ADMIN, and routes and addresses set up outside)")
	fs.StringVar(&c.ipTUN, "ip-tun", "masqroute%d", "TUN interface `name` for -ip tun (%d: the kernel picks a number)")
	fs.IntVar(&c.ipMTU, "ip-mtu", 1500, "MTU of the CONNECT-IP network, in `bytes` (at least 1280)")
	fs.StringVar(&c.ipPool4, "ip-pool4", proxy.DefaultIPPool4.String(), "IPv4 `prefix` CONNECT-IP clients get their addresses from")
	fs.StringVar(&c.ipPool6, "ip-pool6", proxy.DefaultIPPool6.String(), "IPv6 `prefix` (a /64 or longer) CONNECT-IP clients get their addresses from")
	fs.StringVar(&c.ipReachable, "ip-reachable", "", "comma-separated `CIDRs` CONNECT-IP clients may reach; their scopes are cut down to it\n"+
		"(default: the netstack host's addresses with -ip netstack; every public address with -ip tun);\n"+
		"with -ip tun this host's own addresses are refused whatever it says, unless -allow names them")
	fs.StringVar(&c.ipTemplates, "ip-templates", proxy.DefaultIPTemplate+","+proxy.DefaultIPTemplateNoVars,
		"comma-separated CONNECT-IP URI `templates` (variables target and ipproto, optional)")
	fs.StringVar(&c.ipHosts, "ip-hosts", "192.0.2.1,2001:db8::1", "`addresses` of the host in the -ip netstack userspace network\n"+
		"(it answers ICMP echo and echoes UDP on port 7)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	if c.version {
		return c, nil
	}
	if c.configFile != "" {
		if err := applyConfigFile(fs, c.configFile); err != nil {
			return nil, badUsage(fs.Name(), "%v", err)
		}
	}
	c.flags = fs
	gopsSet := false
	fs.Visit(func(f *flag.Flag) { gopsSet = gopsSet || f.Name == "gops" })
	if !gopsSet {
		c.gops = c.dev // the agent opens a port: only where asked, or in -dev
	}
	c.devCarriers(fs)
	bad := func(msg string) (*serveConfig, error) { return nil, badUsage(fs.Name(), "%s", msg) }
	switch {
	case c.ringSize < 1 || c.pendingBuffer < 1 || c.holdTimeout <= 0:
		return bad("-ring-size and -pending-buffer must be at least 1, -hold-timeout positive")
	case c.workers < 1:
		return bad("-workers must be at least 1")
	case (c.cert == "") != (c.key == ""):
		return bad("-cert and -key go together")
	case c.cert != "" && c.selfSigned:
		return bad("-self-signed cannot go with -cert")
	case c.cert != "" && c.writeCA != "":
		return bad("-write-ca is for a self-signed certificate; it cannot go with -cert")
	case c.cert != "" && c.devDir != "":
		return bad("-dev-dir is for a self-signed certificate; it cannot go with -cert")
	case c.devDir != "" && c.writeCA != "":
		return bad("-dev-dir writes the CA to DIR/ca.pem; it cannot go with -write-ca")
	case c.blockProfileRate < 0 || c.mutexProfileFraction < 0 || c.tunnelLogRate < 0:
		return bad("-block-profile-rate, -mutex-profile-fraction and -tunnel-log-rate cannot be negative")
	case c.logFormat != "text" && c.logFormat != "json":
		return bad("-log-format must be text or json")
	case c.devDir != "" && !c.selfSigned && !c.dev:
		return bad("-dev-dir needs -dev or -self-signed")
	}
	if err := c.scale.check(); err != nil {
		return bad(err.Error())
	}
	if err := c.gc.resolve(fs); err != nil {
		return bad(err.Error())
	}
	if c.cert == "" && !c.selfSigned && !c.dev {
		// Not a typo but a missing decision: one line, no usage hint.
		return nil, errNoCert
	}
	if err := c.checkAuth(); err != nil {
		return nil, err
	}
	if c.dev && c.cert == "" {
		c.selfSigned = true
	}
	if c.dev && c.ip == "" {
		c.ip = "netstack"
	}
	switch c.ip {
	case "", "netstack", "tun":
	default:
		return bad("-ip: backend must be netstack or tun")
	}
	return c, nil
}

// errNoCert is what the daemon says when it has no certificate to serve:
// it no longer makes one silently.
var errNoCert = errors.New("no TLS certificate: give -cert and -key, or -self-signed to make one at start, or -dev to try it on this machine")

// loopbackTargets are what -dev adds to the allow list.
var loopbackTargets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

// targetPolicy builds the target policy from -allow, -deny, -allow-ports,
// -deny-ports, and -dev.
func (c *serveConfig) targetPolicy() (*policy.Policy, error) {
	var pc policy.Config
	var err error
	if pc.Allow, err = policy.ParsePrefixes(c.allow); err != nil {
		return nil, fmt.Errorf("-allow: %w", err)
	}
	if pc.Deny, err = policy.ParsePrefixes(c.deny); err != nil {
		return nil, fmt.Errorf("-deny: %w", err)
	}
	if pc.AllowPorts, err = policy.ParsePorts(c.allowPorts); err != nil {
		return nil, fmt.Errorf("-allow-ports: %w", err)
	}
	if pc.DenyPorts, err = policy.ParsePorts(c.denyPorts); err != nil {
		return nil, fmt.Errorf("-deny-ports: %w", err)
	}
	if c.dev {
		pc.Allow = append(pc.Allow, loopbackTargets...)
	}
	return policy.New(pc)
}

// proxyConfig is the engine configuration the flags describe.
func (c *serveConfig) proxyConfig(pol *policy.Policy, ip *proxy.IPConfig, auth daemonAuth, log *slog.Logger) proxy.Config {
	hold := engine.HoldOptions{Max: c.holdMax, Timeout: c.holdTimeout}
	if hold.Max <= 0 {
		hold.Max = -1 // -hold 0 means none; the engine reads a zero Max as its default
	}
	return proxy.Config{
		IP:                     ip,
		ConnectTCP:             c.connectTCP,
		UDPTemplate:            c.template,
		Policy:                 pol,
		ResolveTimeout:         c.resolveTimeout,
		MaxTunnelsPerConn:      c.maxTunnelsPerConn,
		MaxTunnels:             c.maxTunnels,
		MaxConns:               c.maxConns,
		MaxConnsPerAddr:        c.maxConnsPerAddr,
		NewConnsPerAddr:        c.newConnsPerAddr,
		InitTimeout:            c.initTimeout,
		HeaderTimeout:          c.headerTimeout,
		IdleTimeout:            c.idleTimeout,
		MaxDatagramPayload:     c.maxDatagram,
		MaxCapsule:             c.maxCapsule,
		MaxAmplification:       c.maxAmp,
		AmplificationAllowance: c.ampAllowance,
		RateTunnelDatagrams:    c.rateTunnelDgrams,
		RateTunnelBytes:        c.rateTunnelBytes,
		RateConnDatagrams:      c.rateConnDgrams,
		RateConnBytes:          c.rateConnBytes,
		RateBurst:              c.rateBurst,
		RingSize:               c.ringSize,
		PendingBuffer:          c.pendingBuffer,
		Workers:                c.workers,
		Hold:                   hold,
		Logger:                 log,
		Tokens:                 auth.tokens,
		ClientCAs:              auth.clientCAs,
	}
}
