package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/proxy"
)

const usageText = `masqload drives UDP datagram load through a MASQUE CONNECT-UDP proxy to a
UDP echo target and reports throughput, loss (hop by hop where counters are
available) and round-trip latency.

Usage:
  masqload -proxy HOST:PORT -ca FILE -target HOST:PORT [flags]
  masqload -proxy HOST:PORT -ca FILE -echo [flags]          (local echo target)
  masqload -local masqroute|baseline|rawquic [flags]        (everything in process)

Closed loop (-rate 0, the default): every tunnel keeps -window datagrams in
flight, as fast as replies come back. Open loop (-rate R): R datagrams/s in
total are offered on schedule, whatever comes back.

With -metrics (or -local masqroute) the report adds what each datagram cost
the proxy: goroutine wake-ups (wakes/dgram), system calls toward and from
targets per datagram, and the mean batch on each hop (datagrams per call).
`

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

// config is masqload's command line.
type config struct {
	proxy     string
	ca        string
	insecure  bool
	tokenFile string
	template  string
	target    string
	transport string
	carrier   string // client.Carrier*: with -transport masque and -proxy
	local     string
	localTrs  int
	localAff  bool
	echo      bool
	metrics   string
	json      bool

	tunnels, conns, size, window int
	rate                         float64
	duration, warmup, drain      time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("masqload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText, "\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.proxy, "proxy", "", "the proxy's UDP `address` (host:port)")
	fs.StringVar(&c.ca, "ca", "", "trust the PEM certificates in this `file` (e.g. masqroute -write-ca)")
	fs.BoolVar(&c.insecure, "insecure", false, "do not verify the proxy's certificate")
	fs.StringVar(&c.tokenFile, "token-file", "", "`file` holding the bearer token the proxy wants (masqroute token makes one)")
	fs.StringVar(&c.template, "template", proxy.DefaultUDPTemplate, "the proxy's CONNECT-UDP URI `template`")
	fs.StringVar(&c.target, "target", "", "UDP echo target `address` (host:port) the tunnels reach")
	fs.StringVar(&c.transport, "transport", "masque", "masque (CONNECT-UDP through -proxy) or rawquic (raw QUIC datagrams to a rawecho server at -proxy)")
	fs.StringVar(&c.carrier, "carrier", "h3", "with -transport masque: h3 (HTTP/3), h2 (HTTP/2 on TCP), h1 (HTTP/1.1 Upgrade on TCP,\n"+
		"a connection per tunnel) or auto (h3, falling back to h2)")
	fs.StringVar(&c.local, "local", "", "start `impl` in process on loopback and drive it: masqroute, baseline or rawquic")
	fs.IntVar(&c.localTrs, "local-transports", 0, "with -local masqroute: serve on this many SO_REUSEPORT sockets steered by connection ID (0: one, 4-byte IDs);\n"+
		"each of -conns dials from its own port, so the kernel spreads them: use -conns of 8 per transport or more")
	fs.BoolVar(&c.localAff, "local-affinity", true, "with -local-transports: transport i's tunnels on executor worker i, as the daemon places them\n"+
		"(false: round-robin over the workers)")
	fs.BoolVar(&c.echo, "echo", false, "start a UDP echo target on 127.0.0.1 and use it as -target")
	fs.StringVar(&c.metrics, "metrics", "", "the proxy's Prometheus `URL` (http://host:port/metrics): its counters are scraped before and after")
	fs.BoolVar(&c.json, "json", false, "print the result as one JSON object")
	fs.IntVar(&c.tunnels, "tunnels", 1, "tunnels carrying load")
	fs.IntVar(&c.conns, "conns", 1, "HTTP/3 connections the tunnels are spread over")
	fs.IntVar(&c.size, "size", loadgen.DefaultSize, "UDP payload `bytes` per datagram (at least 24)")
	fs.Float64Var(&c.rate, "rate", 0, "offered datagrams/s over all tunnels, open loop (0: closed loop at maximum)")
	fs.IntVar(&c.window, "window", 0, fmt.Sprintf("closed loop: datagrams in flight per tunnel (0: %d/tunnels, 1 to %d)", loadgen.AutoWindowTotal, loadgen.MaxAutoWindow))
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured interval")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured interval, not counted")
	fs.DurationVar(&c.drain, "drain", loadgen.DefaultDrain, "wait this long after the last send for replies")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return c, c.check()
}

func (c *config) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
	}
	switch {
	case c.tunnels < 1:
		return bad("-tunnels must be at least 1")
	case c.conns < 1:
		return bad("-conns must be at least 1")
	case c.size < loadgen.HeaderLen:
		return bad("-size must be at least %d", loadgen.HeaderLen)
	case c.rate < 0:
		return bad("-rate must not be negative")
	case c.window < 0:
		return bad("-window must not be negative")
	case c.duration <= 0:
		return bad("-duration must be positive")
	case c.warmup < 0:
		return bad("-warmup must not be negative")
	case c.localTrs < 0:
		return bad("-local-transports must not be negative")
	}
	if c.local != "" {
		if _, err := e2e.ParseImpl(c.local); err != nil {
			return bad("-local: %v", err)
		}
		if c.proxy != "" || c.target != "" || c.metrics != "" {
			return bad("-local starts its own proxy and target: drop -proxy, -target and -metrics")
		}
		if c.carrier != "h3" {
			return bad("-local serves HTTP/3 only: -carrier needs -proxy")
		}
		return nil
	}
	if c.localTrs != 0 {
		return bad("-local-transports needs -local masqroute")
	}
	if c.proxy == "" {
		return bad("-proxy is required (or -local)")
	}
	switch c.transport {
	case "masque":
		if !slices.Contains([]string{"h3", "h2", "h1", "auto"}, c.carrier) {
			return bad("-carrier must be h3, h2, h1 or auto")
		}
		if c.target == "" && !c.echo {
			return bad("-target or -echo is required")
		}
		if c.target != "" && c.echo {
			return bad("-target and -echo exclude each other")
		}
	case "rawquic":
		if c.target != "" || c.echo {
			return bad("-transport rawquic has no target")
		}
	default:
		return bad("-transport must be masque or rawquic")
	}
	if c.ca != "" && c.insecure {
		return bad("-ca and -insecure exclude each other")
	}
	return nil
}

// loadConfig is the loadgen configuration the flags describe, without
// transport, target and probes.
func (c *config) loadConfig() loadgen.Config {
	return loadgen.Config{
		Tunnels:  c.tunnels,
		Conns:    c.conns,
		Size:     c.size,
		Rate:     c.rate,
		Window:   c.window,
		Warmup:   c.warmup,
		Duration: c.duration,
		Drain:    c.drain,
	}
}
