package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/h3"
	"github.com/masqroute/masqroute/engine/internal/ifwatch"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/udpio"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/policy"
)

// DefaultUDPTemplate is the CONNECT-UDP URI template of RFC 9298 §3, with the
// proxy's own authority: "{authority}" matches whatever host and port the
// client reached the proxy under.
const DefaultUDPTemplate = template.DefaultUDP

// Defaults for Config fields left zero.
const (
	DefaultMaxTunnelsPerConn  = 1024
	DefaultResolveTimeout     = 5 * time.Second
	DefaultTunnelIdleTimeout  = 2 * time.Minute
	DefaultMaxDatagramPayload = 1500
	DefaultMaxCapsule         = wire.DefaultMaxCapsuleValue // 64 KiB
	DefaultHoldMax            = 64
	DefaultHeaderTimeout      = h3.DefaultHeaderTimeout
	// maxIncomingUniStreams: a client needs three (control, QPACK
	// encoder and decoder); a few more for extensions.
	maxIncomingUniStreams = 8
)

// A TargetPolicy decides which targets a tunnel may reach. Check gets the
// address the proxy resolved and will connect to; a non-nil error refuses it
// with 403. *policy.Policy is the built-in one.
type TargetPolicy interface {
	Check(netip.AddrPort) error
}

// A Resolver looks host names up. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Proxy. The zero value serves CONNECT-UDP on the
// default template with the default policy (no loopback, private, link-local
// or multicast targets).
type Config struct {
	// Name is the proxy's name in Proxy-Status headers. Default "masqroute".
	Name string
	// UDPTemplate is the CONNECT-UDP URI template (RFC 6570), absolute,
	// with the variables target_host and target_port, in path or query
	// form. Default DefaultUDPTemplate.
	UDPTemplate string
	// Policy decides which targets tunnels may reach. Default
	// policy.Default().
	Policy TargetPolicy
	// HostAddrs lists the host's own addresses, which tunnels may not
	// reach unless Policy names them explicitly (hostaddrs.go). Default
	// InterfaceAddrs; read by New and by RefreshHostAddrs.
	HostAddrs func() ([]netip.Addr, error)
	// WatchHostAddrs, while the proxy serves, calls changed whenever the
	// host's addresses may have changed (the proxy then reads HostAddrs
	// again) until ctx ends. Default, with the default HostAddrs: address
	// notifications from rtnetlink on Linux, a poll every 30 s elsewhere;
	// with a HostAddrs of one's own, none.
	WatchHostAddrs func(ctx context.Context, changed func()) error
	// Resolver resolves target host names. Default net.DefaultResolver.
	Resolver Resolver
	// ResolveTimeout bounds one target lookup. Default
	// DefaultResolveTimeout.
	ResolveTimeout time.Duration
	// Tokens, if set, are the bearer tokens a tunnel request must carry
	// (auth.go): a request without one of them is answered 407.
	Tokens *TokenSet
	// ClientCAs, if set, are the CAs a client certificate must chain to;
	// TLSConfig applies them to the listener's tls.Config.
	ClientCAs *x509.CertPool
	// Authorize, if set, runs before a tunnel is set up, after Tokens. A non-nil error
	// refuses the request: a *StatusError chooses its status (401, 403,
	// 407) and headers; any other error answers 403.
	Authorize func(*http.Request) error
	// MaxTunnelsPerConn bounds tunnels (pending and active) on one
	// connection. Default DefaultMaxTunnelsPerConn; negative = unlimited.
	MaxTunnelsPerConn int
	// MaxTunnels bounds tunnels across all connections. 0 = unlimited.
	MaxTunnels int
	// MaxConns bounds concurrent connections. On a transport set up by
	// ConfigureTransport, one past it is refused before its handshake
	// (CONNECTION_REFUSED), handshakes under way counting, and past half of
	// it a new client must answer a Retry first; any other
	// (ServeConn from an embedder's listener, ServeTCP) is closed once
	// served, with H3_EXCESSIVE_LOAD (TCP: at accept). 0 = unlimited.
	MaxConns int
	// MaxConnsPerAddr bounds concurrent connections from one client
	// address (IPv4, or IPv6 /64), and NewConnsPerAddr new connections per
	// second from one (burst: twice that), both before the handshake
	// completes, on the transports ConfigureTransport sets up
	// (addrlimit.go). Defaults DefaultMaxConnsPerAddr,
	// DefaultNewConnsPerAddr; negative = no limit.
	MaxConnsPerAddr int
	NewConnsPerAddr float64
	// HeaderTimeout bounds what a client can hold without a request: the
	// time from a stream's arrival to its complete request head (or a
	// unidirectional stream's type), and a tunnel request's wait for the
	// client's SETTINGS. Default DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// InitTimeout bounds a tunnel's setup (resolution, policy, socket).
	// Default [engine.DefaultInitTimeout].
	InitTimeout time.Duration
	// IdleTimeout closes a tunnel that carried no datagram either way for
	// this long. Default DefaultTunnelIdleTimeout; negative = never.
	IdleTimeout time.Duration
	// MaxDatagramPayload bounds the UDP payload of one datagram, both
	// ways; larger ones are dropped and counted. Default
	// DefaultMaxDatagramPayload.
	MaxDatagramPayload int
	// MaxAmplification bounds, per connection and one-second window, the
	// wire bytes sent toward targets as a multiple of the QUIC bytes
	// received from the client (amplification.go). Default
	// DefaultMaxAmplification; negative = no bound.
	MaxAmplification int
	// AmplificationAllowance is the wire bytes a connection may send
	// toward targets per window besides. Default
	// DefaultAmplificationAllowance.
	AmplificationAllowance int
	// RateTunnelDatagrams and RateTunnelBytes bound what one tunnel sends
	// toward its target per second (datagrams, and UDP payload or IP
	// packet bytes); RateConnDatagrams and RateConnBytes what all of one
	// connection's tunnels send together. Token buckets RateBurst deep;
	// what exceeds is dropped and counted as rate_limited (ratelimit.go).
	// Defaults DefaultRate*; negative = no limit.
	RateTunnelDatagrams int64
	RateTunnelBytes     int64
	RateConnDatagrams   int64
	RateConnBytes       int64
	// RateBurst is the depth of every rate bucket, as time at its rate.
	// Default DefaultRateBurst.
	RateBurst time.Duration
	// MaxCapsule bounds a capsule's value; a larger one resets the stream
	// with H3_MESSAGE_ERROR. Default DefaultMaxCapsule.
	MaxCapsule int
	// RingSize and PendingBuffer size each tunnel's queues (see [engine.Options]).
	RingSize      int
	PendingBuffer int
	// Workers is the number of executor workers that run every
	// connection's tunnels (see [engine.Executor]). Default
	// [engine.DefaultWorkers].
	Workers int
	// Hold keeps datagrams that overtake their request (see
	// [engine.HoldOptions]). Default: DefaultHoldMax datagrams for
	// [engine.DefaultHoldTimeout].
	Hold engine.HoldOptions
	// Kinds adds session kinds for other :protocol values; an embedder's
	// [engine.Kind] receives [engine.Args].Value of type *Request. A kind
	// says which requests are its own by being a [RequestMatcher] (see
	// [TemplateKind]). connect-udp is always served by masqroute's own
	// kind unless Kinds registers one.
	Kinds *engine.Registry
	// IP enables CONNECT-IP (RFC 9484) when set.
	IP *IPConfig
	// ConnectTCP enables CONNECT for TCP (RFC 9114 §4.4; connecttcp.go)
	// under the same Policy, auth and tunnel limits. Default off.
	ConnectTCP bool
	// Handler serves requests that are not MASQUE requests (no
	// :protocol a kind is registered for). Default: 404 for everything
	// else. Mount MASQUEHandler in it to route MASQUE by path yourself.
	Handler http.Handler
	// Logger receives the proxy's logs. Default slog.Default().
	Logger *slog.Logger
	// Hooks are told of tunnels that end, refusals and setups (observe.go).
	Hooks Hooks
}

// A Proxy serves MASQUE tunnels over HTTP/3. Every datagram of every
// connection goes through the connection's [engine.Router].
type Proxy struct {
	cfg         Config
	udpTmpl     *template.Template
	kinds       *engine.Registry
	handler     http.Handler
	log         *slog.Logger
	counters    proxyCounters
	host        atomic.Pointer[hostAddrs] // the host's addresses (hostaddrs.go)
	hostWatch   hostWatcher               // reads them again when they change
	listenAddrs listenSet                 // every listener's address, for checkHost
	auth        authCounters
	tcp         tcpCounters  // CONNECT (TCP) tunnels (connecttcp.go)
	bind        bindCounters // Connect-UDP-Bind tunnels (udpbind.go)

	tunnels atomic.Int64 // live tunnels, for MaxTunnels
	// quicAdmitted counts the QUIC connections that ConfigureTransport's
	// ConnContext let in, from their first Initial until their context
	// ends: MaxConns before the handshake.
	quicAdmitted atomic.Int64
	draining     atomic.Bool
	hooks        shutdownHooks           // nil outside tests (conn.go)
	ip           *ipNet                  // nil unless CONNECT-IP is enabled
	addrs        *addrLimiter            // per client address (addrlimit.go); nil: no limits
	byProto      map[string]*protoCounts // fixed by New
	// maxCapsuleDatagram is the largest DATAGRAM capsule value a tunnel
	// can use: the largest payload (UDP or IP) and a context ID.
	maxCapsuleDatagram int
	udpBase            udpio.Counters // the socket layer's counters when New ran; Stats reports growth since

	mu           sync.Mutex // guards the fields below
	conns        map[*proxyConn]struct{}
	listeners    map[*quic.Listener]struct{}
	tcpListeners map[net.Listener]*tcpServer // ServeTCP's (tcpserve.go)
	closed       bool
	connsWG      sync.WaitGroup   // one per ServeConn
	exec         *engine.Executor // runs every connection's tunnels; started by the first ServeConn, closed by Close
	// pollers read every tunnel's target socket (nil off Linux: a
	// goroutine per tunnel reads instead); started with exec.
	pollers  []*udpio.Poller
	nextPoll atomic.Uint32
	live     map[*tunnelCounters]struct{}
	stock    map[*stockTunnel]struct{} // HTTP3Handler's tunnels, which Close ends
	stockWG  sync.WaitGroup            // one per entry of stock
	// foldedRouter holds the router counters of connections that have
	// ended.
	foldedRouter engine.Stats

	// liveTunnels holds MASQUEHandler's live tunnels (*requestHandler,
	// *tcpTunnel), for Tunnels (observe.go).
	liveTunnels sync.Map
}

// New validates cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Name == "" {
		cfg.Name = "masqroute"
	}
	if cfg.UDPTemplate == "" {
		cfg.UDPTemplate = DefaultUDPTemplate
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Default()
	}
	if cfg.HostAddrs == nil {
		cfg.HostAddrs = InterfaceAddrs
		if cfg.WatchHostAddrs == nil {
			cfg.WatchHostAddrs = ifwatch.Watch
		}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.ResolveTimeout <= 0 {
		cfg.ResolveTimeout = DefaultResolveTimeout
	}
	if cfg.MaxTunnelsPerConn == 0 {
		cfg.MaxTunnelsPerConn = DefaultMaxTunnelsPerConn
	} else if cfg.MaxTunnelsPerConn < 0 {
		cfg.MaxTunnelsPerConn = 0
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = engine.DefaultInitTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultTunnelIdleTimeout
	}
	if cfg.MaxDatagramPayload <= 0 {
		cfg.MaxDatagramPayload = DefaultMaxDatagramPayload
	}
	if cfg.MaxAmplification == 0 {
		cfg.MaxAmplification = DefaultMaxAmplification
	}
	if cfg.AmplificationAllowance <= 0 {
		cfg.AmplificationAllowance = DefaultAmplificationAllowance
	}
	for _, r := range []struct {
		v   *int64
		def int64
	}{
		{&cfg.RateTunnelDatagrams, DefaultRateTunnelDatagrams},
		{&cfg.RateTunnelBytes, DefaultRateTunnelBytes},
		{&cfg.RateConnDatagrams, DefaultRateConnDatagrams},
		{&cfg.RateConnBytes, DefaultRateConnBytes},
	} {
		if *r.v == 0 {
			*r.v = r.def
		}
	}
	if cfg.MaxConnsPerAddr == 0 {
		cfg.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if cfg.NewConnsPerAddr == 0 {
		cfg.NewConnsPerAddr = DefaultNewConnsPerAddr
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	if cfg.MaxCapsule <= 0 {
		cfg.MaxCapsule = DefaultMaxCapsule
	}
	if cfg.Hold.Max == 0 {
		cfg.Hold.Max = DefaultHoldMax
	} else if cfg.Hold.Max < 0 {
		cfg.Hold.Max = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, r := range []int64{cfg.RateTunnelBytes, cfg.RateConnBytes} {
		if r > 0 && float64(r)*cfg.RateBurst.Seconds() < float64(cfg.MaxDatagramPayload) {
			return nil, fmt.Errorf("masqroute: a byte rate of %d/s with a burst of %v cannot pass one %d-byte datagram", r, cfg.RateBurst, cfg.MaxDatagramPayload)
		}
	}
	tmpl, err := template.Parse(cfg.UDPTemplate, "target_host", "target_port")
	if err != nil {
		return nil, fmt.Errorf("masqroute: UDP template: %w", err)
	}
	p := &Proxy{
		cfg:       cfg,
		udpTmpl:   tmpl,
		log:       cfg.Logger,
		conns:     make(map[*proxyConn]struct{}),
		listeners: make(map[*quic.Listener]struct{}),
		live:      make(map[*tunnelCounters]struct{}),
		udpBase:   udpio.Stats(),
	}
	p.addrs = newAddrLimiter(cfg.MaxConnsPerAddr, cfg.NewConnsPerAddr)
	p.listenAddrs.Store(new([]netip.AddrPort))
	if err := p.RefreshHostAddrs(); err != nil {
		return nil, fmt.Errorf("masqroute: the host's addresses: %w", err)
	}
	p.kinds = engine.NewRegistry()
	p.kinds.Register(engine.ProtocolConnectUDP, wrapKind(&udpKind{p: p}, p.matchUDP))
	if cfg.Kinds != nil {
		for proto, k := range cfg.Kinds.All() {
			p.kinds.Register(proto, wrapKind(k, nil))
		}
	}
	if cfg.IP != nil {
		if _, err := p.kinds.Select(engine.Args{Protocol: engine.ProtocolConnectIP}); err == nil {
			return nil, errors.New("masqroute: proxy.Config.IP and a connect-ip kind in Kinds")
		}
		n, err := newIPNet(p, *cfg.IP)
		if err != nil {
			return nil, fmt.Errorf("masqroute: CONNECT-IP: %w", err)
		}
		p.ip = n
		p.kinds.Register(engine.ProtocolConnectIP, wrapKind(&ipKind{n}, n.matchRequest))
	}
	p.maxCapsuleDatagram = cfg.MaxDatagramPayload
	if cfg.IP != nil {
		p.maxCapsuleDatagram = max(p.maxCapsuleDatagram, ipBufSize) // an IP packet, at most the device's MTU
	}
	p.maxCapsuleDatagram += 8 // the longest context ID varint
	p.byProto = make(map[string]*protoCounts)
	for proto := range p.kinds.All() {
		p.byProto[proto] = &protoCounts{}
	}
	p.handler = cfg.Handler
	if p.handler == nil {
		p.handler = http.NotFoundHandler()
	}
	return p, nil
}

// QUICConfig returns a copy of base (nil for quic-go's defaults) with what
// the proxy needs: datagrams on, and enough incoming streams for the tunnel
// limit. Use it for the quic.Listener whose connections you hand the proxy.
func (p *Proxy) QUICConfig(base *quic.Config) *quic.Config {
	var c quic.Config
	if base != nil {
		c = *base.Clone()
	}
	c.EnableDatagrams = true
	if p.ip != nil && c.InitialPacketSize < ipInitialPacketSize {
		// A CONNECT-IP tunnel must carry 1280-byte packets in datagrams
		// from the start (RFC 9484 §10.1).
		c.InitialPacketSize = ipInitialPacketSize
	}
	want := int64(p.cfg.MaxTunnelsPerConn) + 16 // tunnels + ordinary requests
	if p.cfg.MaxTunnelsPerConn == 0 {
		want = 1 << 16
	}
	if c.MaxIncomingStreams < want {
		c.MaxIncomingStreams = want
	}
	if c.MaxIncomingUniStreams == 0 {
		c.MaxIncomingUniStreams = maxIncomingUniStreams
	}
	// A stream keeps its credit until its goroutine has ended, so
	// MaxIncomingStreams bounds the goroutines a client can hold, not
	// only its open streams.
	c.RequireStreamCreditRelease = true
	// The handshake, too, has a deadline (quic-go's default is 5 s).
	if c.HandshakeIdleTimeout == 0 {
		c.HandshakeIdleTimeout = p.cfg.HeaderTimeout
	}
	return &c
}

// Serve accepts connections from ln and serves each on its own goroutine
// until ln fails or Shutdown/Close is called. ln's quic.Config must have
// datagrams enabled (see QUICConfig).
func (p *Proxy) Serve(ln *quic.Listener) error {
	p.mu.Lock()
	if p.closed || p.draining.Load() {
		p.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	p.listeners[ln] = struct{}{}
	p.startHostWatchLocked()
	p.mu.Unlock()
	p.addListenAddr(ln.Addr())
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
	}()
	for {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			if p.draining.Load() || errors.Is(err, quic.ErrServerClosed) {
				return http.ErrServerClosed
			}
			return err
		}
		go func() {
			if err := p.ServeConn(qc); err != nil {
				p.log.Debug("masqroute: connection ended", "remote", qc.RemoteAddr(), "error", err)
			}
		}()
	}
}

// Shutdown stops the proxy gracefully: listeners stop accepting, every
// connection gets a GOAWAY, new requests are answered 503, and existing
// tunnels may go on until they end or ctx is done; then every connection is
// closed. Shutdown returns ctx.Err() if it had to cut tunnels short.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	for ln := range p.listeners {
		ln.Close()
	}
	p.closeTCPListenersLocked()
	servers := make([]*tcpServer, 0, len(p.tcpListeners))
	for _, s := range p.tcpListeners {
		servers = append(servers, s)
	}
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	if h := p.hooks.goAwaysSent; h != nil {
		h()
	}
	// The TCP carriers drain through net/http: its Shutdown sends GOAWAY
	// on every HTTP/2 connection and closes idle HTTP/1.1 ones (an
	// upgraded one is its tunnel's); it returns once its connections are
	// idle, or when stopServers is called.
	sctx, stopServers := context.WithCancel(ctx)
	var serversDone sync.WaitGroup
	for _, s := range servers {
		serversDone.Go(func() { s.srv.Shutdown(sctx) })
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for p.tunnels.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-tick.C:
		}
	}
	stopServers()
	serversDone.Wait()
	return errors.Join(err, p.Close())
}

// Close closes every connection and listener at once and waits until every
// connection's goroutines have ended, and every HTTP3Handler tunnel. It is
// idempotent.
func (p *Proxy) Close() error {
	p.draining.Store(true)
	p.mu.Lock()
	p.closed = true
	for ln := range p.listeners {
		ln.Close()
	}
	p.closeTCPListenersLocked()
	for c := range p.conns {
		c.carrier.closeNow()
	}
	for t := range p.stock {
		t.end() // its handler returns promptly: it reads a cancelled stream
	}
	p.mu.Unlock()
	p.connsWG.Wait()
	p.stockWG.Wait()
	p.stopHostWatch()
	p.mu.Lock()
	exec, pollers := p.exec, p.pollers
	p.mu.Unlock()
	if exec != nil {
		exec.Close() // after every connection's router: no session is left to run
	}
	for _, pl := range pollers {
		pl.Close() // every tunnel has removed its socket
	}
	if p.ip != nil {
		p.ip.close() // after every tunnel: their Close unpublishes them
	}
	return nil
}

// ipInitialPacketSize is the QUIC initial packet size when CONNECT-IP is on:
// room for a 1280-byte IP packet, the HTTP Datagram header and QUIC's
// overhead, as connect-ip-go's client uses too.
const ipInitialPacketSize = 1350

// admitTunnel reserves a place under MaxTunnels.
func (p *Proxy) admitTunnel() bool {
	if n := p.tunnels.Add(1); p.cfg.MaxTunnels > 0 && n > int64(p.cfg.MaxTunnels) {
		p.tunnels.Add(-1)
		return false
	}
	return true
}

// releaseTunnel gives back a tunnel's place under MaxTunnels and, for a
// tunnel of one of the proxy's own connections (c non-nil), under
// MaxTunnelsPerConn.
func (p *Proxy) releaseTunnel(c *proxyConn) {
	if c != nil {
		c.tunnels.Add(-1)
	}
	p.tunnels.Add(-1)
}

// startDataPathLocked starts the executor and the pollers the first time a
// connection needs them, and the watch on the host's addresses if Serve has
// not. The caller holds p.mu.
func (p *Proxy) startDataPathLocked() {
	p.startHostWatchLocked()
	if p.exec != nil {
		return
	}
	p.exec = engine.NewExecutor(p.cfg.Workers)
	for range p.exec.Workers() {
		pl, err := udpio.NewPoller()
		if err != nil {
			// No epoll here (not Linux): tunnels read with a
			// goroutine each.
			p.log.Debug("masqroute: no poller; a receive goroutine per tunnel", "err", err)
			break
		}
		p.pollers = append(p.pollers, pl)
	}
}

// nextPoller returns the poller for a new tunnel (round robin), or nil when
// there is none.
func (p *Proxy) nextPoller() *udpio.Poller {
	p.mu.Lock()
	pollers := p.pollers
	p.mu.Unlock()
	if len(pollers) == 0 {
		return nil
	}
	return pollers[int(p.nextPoll.Add(1)-1)%len(pollers)]
}
