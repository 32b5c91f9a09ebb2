package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/bench/e2e/baseline"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/bench/e2e/rawecho"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// An Impl is what carries the load.
type Impl string

// The implementations the benchmark compares.
const (
	Masqroute Impl = "masqroute" // proxy.Proxy, driven by masqroute's client
	Baseline  Impl = "baseline"  // baseline.Server (stock http3.Server), same client
	RawQUIC   Impl = "rawquic"   // rawecho.Server, raw QUIC datagrams: the ceiling
)

// Impls are every Impl, in the order the benchmark runs them.
var Impls = []Impl{Masqroute, Baseline, RawQUIC}

// ParseImpl returns the Impl named s.
func ParseImpl(s string) (Impl, error) {
	for _, i := range Impls {
		if string(i) == s {
			return i, nil
		}
	}
	return "", fmt.Errorf("e2e: unknown implementation %q (want masqroute, baseline or rawquic)", s)
}

// MaxIncomingStreams is the servers' stream limit in Env: enough for a
// thousand tunnels on one connection. Both proxies get the same.
const MaxIncomingStreams = 2048

// QUICConfig is the QUIC configuration every server and client of an Env
// starts from, so that both proxies and the ceiling run on equal terms.
func QUICConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:     30 * time.Second,
		MaxIncomingStreams: MaxIncomingStreams,
	}
}

var (
	certOnce sync.Once
	cert     *devcert.Cert
	certErr  error
)

// Cert is the loopback certificate every Env serves (made once).
func Cert() (*devcert.Cert, error) {
	certOnce.Do(func() { cert, certErr = devcert.Loopback() })
	return cert, certErr
}

// An Env is one implementation serving on loopback, with the UDP echo
// target its tunnels reach (none for RawQUIC), and a Transport and Probes
// for loadgen.Config. The server runs in this process (Start) or in a
// process of its own (StartProcess; Process is then set).
type Env struct {
	Impl Impl
	// Addr is the address clients dial: the proxy's, or the raw echo
	// server's.
	Addr      string
	Transport loadgen.Transport
	Target    string
	Probes    []loadgen.Probe
	// Proxy is the masqroute proxy (Masqroute in this process only).
	Proxy *proxy.Proxy
	// Process is the server's process (StartProcess only).
	Process *Process

	closers []func() error // run in reverse order by Close
}

// Start starts impl on 127.0.0.1 with an echo target beside it, all in
// this process.
func Start(impl Impl) (_ *Env, err error) { return StartWith(impl, ServerConfig{}) }

// StartWith is Start with cfg.
func StartWith(impl Impl, cfg ServerConfig) (_ *Env, err error) {
	e, err := StartServerWith(impl, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := e.startTarget(); err != nil {
		return nil, err
	}
	return e, nil
}

// StartServer starts impl's server alone on 127.0.0.1, without the echo
// target: the half of an Env that a proxy process runs (see ChildMain).
// Addr is the address clients dial; Transport is set for RawQUIC only.
func StartServer(impl Impl) (_ *Env, err error) { return StartServerWith(impl, ServerConfig{}) }

// StartServerWith is StartServer with cfg.
func StartServerWith(impl Impl, cfg ServerConfig) (_ *Env, err error) {
	c, err := Cert()
	if err != nil {
		return nil, err
	}
	e := &Env{Impl: impl}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	withRole("server", func() { e.Addr, err = e.startServer(c, cfg) })
	if err != nil {
		return nil, err
	}
	if impl != RawQUIC {
		e.Transport = &loadgen.MASQUE{Proxy: e.Addr, TLS: c.ClientTLS(), QUIC: QUICConfig(), Carrier: cfg.Carrier}
	}
	return e, nil
}

// startTarget starts the UDP echo target the proxies forward to (none for
// RawQUIC, which echoes by itself).
func (e *Env) startTarget() (err error) {
	if e.Impl == RawQUIC {
		return nil
	}
	var es *echo.Server
	withRole("target", func() { es, err = echo.Listen("127.0.0.1:0") })
	if err != nil {
		return err
	}
	e.closers = append(e.closers, es.Close)
	e.Target = es.Addr().String()
	e.Probes = append(e.Probes, loadgen.EchoProbe(es))
	return nil
}

// withRole runs f with the pprof label e2e=role, which every goroutine f
// starts inherits: a CPU profile of a benchmark tells the client, the server
// and the target apart with -tagfocus e2e=server (or client, target).
func withRole(role string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("e2e", role), func(context.Context) { f() })
}

// startServer starts e.Impl's server and returns the address clients dial.
func (e *Env) startServer(c *devcert.Cert, cfg ServerConfig) (addr string, err error) {
	switch e.Impl {
	case Masqroute:
		addr, err = e.startMasqroute(c, cfg)
	case Baseline:
		var s *baseline.Server
		if s, err = baseline.Listen("127.0.0.1:0", c.ServerTLS(), QUICConfig()); err == nil {
			e.closers = append(e.closers, s.Close)
			e.Probes = append(e.Probes, BaselineProbe(s))
			addr = s.Addr().String()
		}
	case RawQUIC:
		var s *rawecho.Server
		if s, err = rawecho.Listen("127.0.0.1:0", c.ServerTLS(), QUICConfig()); err == nil {
			e.closers = append(e.closers, s.Close)
			e.Probes = append(e.Probes, loadgen.RawEchoProbe(s))
			addr = s.Addr().String()
			e.Transport = &loadgen.RawQUIC{Addr: addr, TLS: c.ClientTLS(), QUIC: QUICConfig()}
		}
	default:
		err = fmt.Errorf("e2e: unknown implementation %q", e.Impl)
	}
	return addr, err
}

// LoopbackPolicy opens loopback targets and keeps every other built-in
// refusal.
func LoopbackPolicy() *policy.Policy {
	p, err := policy.New(policy.Config{Allow: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}})
	if err != nil {
		panic(err) // constant input
	}
	return p
}

// PlainQUICSocketEnv, set to 1 in a masqroute server's environment, makes
// it serve QUIC on the bare UDP socket instead of proxy.BatchedQUICConn:
// the A/B switch for the batched writes toward clients.
const PlainQUICSocketEnv = "E2E_PLAIN_QUIC_SOCKET"

// quicSocket is the socket masqroute's QUIC runs on: uc batched, as the
// daemon does, unless E2E_PLAIN_QUIC_SOCKET=1 asks for the bare socket.
func quicSocket(uc *net.UDPConn) (net.PacketConn, error) {
	if os.Getenv(PlainQUICSocketEnv) == "1" {
		return uc, nil
	}
	return proxy.BatchedQUICConn(uc)
}

func (e *Env) startMasqroute(c *devcert.Cert, cfg ServerConfig) (string, error) {
	p, err := proxy.New(proxy.Config{
		Policy: LoopbackPolicy(),
		Logger: slog.New(slog.DiscardHandler),
		// Every load connection comes from 127.0.0.1: the per-address
		// limits would refuse -e2e.conns above their defaults.
		MaxConnsPerAddr: -1,
		NewConnsPerAddr: -1,
	})
	if err != nil {
		return "", err
	}
	addr, err := e.serveMasqrouteQUIC(c, p, cfg)
	if err != nil || cfg.Carrier == "" || cfg.Carrier == "h3" {
		return addr, err
	}
	return addr, e.serveMasqrouteTCP(c, p, addr, cfg.Carrier)
}

// serveMasqrouteTCP serves p's carrier ("h2" or "h1") on TCP at addr's
// port, as the daemon's -h2 / -h1 do.
func (e *Env) serveMasqrouteTCP(c *devcert.Cert, p *proxy.Proxy, addr, carrier string) error {
	opts := proxy.TCPOptions{H2: carrier == "h2", H1: carrier == "h1"}
	if !opts.H2 && !opts.H1 {
		return fmt.Errorf("e2e: unknown carrier %q (want h3, h2 or h1)", carrier)
	}
	if opts.H2 && !proxy.ExtendedConnectEnabled() {
		return fmt.Errorf("e2e: carrier h2 needs GODEBUG=%s in the server's environment", proxy.ExtendedConnectEnv)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- p.ServeTCP(ln, c.ServerTLS(), opts) }()
	// Closers run in reverse: this one, before the proxy's own, stops the
	// TCP server when the proxy closes and waits for it.
	e.closers = append(e.closers, func() error {
		ln.Close()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	return nil
}

// serveMasqrouteQUIC serves p on HTTP/3: one socket, or transports steered
// ones.
func (e *Env) serveMasqrouteQUIC(c *devcert.Cert, p *proxy.Proxy, cfg ServerConfig) (string, error) {
	if cfg.Transports > 0 {
		return e.startMasqrouteTransports(c, p, cfg.Transports, cfg.Affinity)
	}
	tlsConf := c.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return "", err
	}
	pc, err := quicSocket(uc)
	if err != nil {
		uc.Close()
		return "", err
	}
	tr := &quic.Transport{Conn: pc}
	p.ConfigureTransport(tr)
	ln, err := tr.Listen(tlsConf, p.QUICConfig(QUICConfig()))
	if err != nil {
		tr.Close()
		pc.Close()
		return "", err
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	e.closers = append(e.closers, func() error {
		err := p.Close()
		ln.Close()
		tr.Close()
		pc.Close()
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	})
	e.Proxy = p
	e.Probes = append(e.Probes, loadgen.ProxyProbe(p))
	return ln.Addr().String(), nil
}

// Close stops everything Start started and waits for its goroutines.
func (e *Env) Close() error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		errs = append(errs, e.closers[i]())
	}
	e.closers = nil
	return errors.Join(errs...)
}

// Run runs cfg's load against the Env: Transport, Target and Probes are
// filled in.
func (e *Env) Run(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
	cfg.Transport = e.Transport
	cfg.Target = e.Target
	cfg.Probes = append(append([]loadgen.Probe(nil), e.Probes...), cfg.Probes...)
	var res loadgen.Result
	var err error
	withRole("client", func() { res, err = loadgen.Run(ctx, cfg) })
	res.Transport = string(e.Impl)
	return res, err
}

// BaselineProbe reads the baseline proxy's counters.
func BaselineProbe(s *baseline.Server) loadgen.Probe {
	return loadgen.ProbeFunc(func(context.Context) (loadgen.Counters, error) {
		st := s.Stats()
		return loadgen.Counters{
			Hops: []loadgen.Hop{
				{Stage: loadgen.StageProxyToTarget, Name: "baseline: to target", Count: st.ToTarget},
				{Stage: loadgen.StageProxyToClient, Name: "baseline: to client", Count: st.ToClient},
			},
			Drops: map[string]uint64{
				"baseline.bad_context":  st.DropBadContext,
				"baseline.send_error":   st.DropSendError,
				"baseline.return_error": st.DropReturn,
			},
		}, nil
	})
}
