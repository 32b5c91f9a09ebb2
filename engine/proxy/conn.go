package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/h3"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A proxyConn is one client connection: its QUIC connection, the HTTP/3
// layer masqroute runs on it, and the Router that owns all its datagrams.
//
// Goroutines per connection: h3's accept loops and request handlers (one
// per tunnel, reading the tunnel's capsules), routineReceiveDatagrams (the
// single consumer of the connection's QUIC datagrams), and the router's
// control plane. ServeConn returns after all of them have ended.
type proxyConn struct {
	p       *Proxy
	carrier carrier    // what the connection runs on (carrier.go)
	qc      *quic.Conn // HTTP/3 only
	// h3 is written by ServeConn before Serve starts any handler, which
	// is what orders it before their reads. Shutdown's goAway reads
	// h3ready instead: ServeConn publishes it, then checks draining, and
	// Shutdown sets draining, then loads it — one of the two sends the
	// GOAWAY of a connection set up during the shutdown.
	h3      *h3.Conn
	h3ready atomic.Pointer[h3.Conn]
	router  *engine.Router
	sender  *sender     // replies to the client (sender.go)
	amp     *ampBudget  // bytes toward targets (amplification.go); nil: no bound
	rate    *rateLimits // datagrams and bytes per second toward targets (ratelimit.go); nil: none
	// datagrams: the client negotiated QUIC datagrams (RFC 9221), so
	// replies go as datagrams rather than DATAGRAM capsules.
	datagrams bool
	// tunnels counts the connection's tunnel requests from their
	// admission (before any wait) to their end, for MaxTunnelsPerConn.
	tunnels atomic.Int64
}

type connKey struct{}

// shutdownHooks let a test force the interleaving of ServeConn and Shutdown
// that the h3 handle's Dekker pair exists for (export_test.go sets them
// before Serve); both are nil outside tests.
type shutdownHooks struct {
	// beforePublish runs in ServeConn once the connection is in p.conns
	// (so Shutdown's walk finds it) and before its h3 handle is published.
	beforePublish func()
	// goAwaysSent runs in Shutdown once every connection it listed has
	// been told goAway.
	goAwaysSent func()
}

// workerKey is the context key of WithWorker.
type workerKey struct{}

// WithWorker returns ctx marked so that the tunnels of a QUIC connection
// whose context it is run on executor worker i mod Config.Workers. Return
// it from a quic.Transport's ConnContext: a server with one Transport per
// core keeps each transport's connections on the worker of the same index
// (docs/scaling.md). Connections without it are spread round-robin.
func WithWorker(ctx context.Context, i int) context.Context {
	return context.WithValue(ctx, workerKey{}, i)
}

// connPlacement is the placement WithWorker put on a connection's context.
func connPlacement(ctx context.Context) engine.Placement {
	if i, ok := ctx.Value(workerKey{}).(int); ok {
		return engine.OnWorker(i)
	}
	return engine.Placement{}
}

// ServeConn serves one accepted QUIC connection until it closes. Its
// quic.Config must enable datagrams (see QUICConfig). It is how an embedder
// that runs its own quic.Listener hands connections to masqroute.
func (p *Proxy) ServeConn(qc *quic.Conn) error {
	p.mu.Lock()
	if p.closed || p.draining.Load() {
		p.mu.Unlock()
		qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeNoError), "shutting down")
		return http.ErrServerClosed
	}
	if p.cfg.MaxConns > 0 && len(p.conns) >= p.cfg.MaxConns {
		p.mu.Unlock()
		p.counters.connsRejected.Add(1)
		qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeExcessiveLoad), "too many connections")
		return errors.New("masqroute: connection limit reached")
	}
	c := &proxyConn{
		p:         p,
		qc:        qc,
		datagrams: qc.ConnectionState().SupportsDatagrams.Remote,
	}
	c.carrier = (*h3Carrier)(c)
	p.addConnLocked(c, qc, func() uint64 { return qc.ConnectionStats().BytesReceived }, connPlacement(qc.Context()))
	p.mu.Unlock()
	p.counters.connsAccepted.Add(1)
	defer p.connsWG.Done()

	hc, err := h3.NewConn(qc, &h3.Config{
		Handler:       p.topHandler(),
		Datagrams:     true,
		HeaderTimeout: p.cfg.HeaderTimeout,
		ConnContext:   func(ctx context.Context) context.Context { return context.WithValue(ctx, connKey{}, c) },
		Logger:        p.log,
	})
	if err == nil {
		if h := p.hooks.beforePublish; h != nil {
			h()
		}
		c.h3 = hc
		c.h3ready.Store(hc) // then load draining: see goAway
		if p.draining.Load() {
			hc.GoAway()
		}
		rx := make(chan struct{})
		go func() {
			defer close(rx)
			c.routineReceiveDatagrams()
		}()
		err = hc.Serve() // returns once the connection closed and every handler returned
		<-rx
	}
	c.release()
	return err
}

// addConnLocked gives c, whatever its carrier, its router, sender and
// limits and adds it to the proxy's connections; out sends its HTTP/3
// datagrams, received counts the bytes the client has sent it (for the
// amplification bound) and placement picks the executor worker of its
// tunnels. The caller holds p.mu and calls p.connsWG.Done once the
// connection has ended and c.release has run.
func (p *Proxy) addConnLocked(c *proxyConn, out engine.DatagramSender, received func() uint64, placement engine.Placement) {
	p.startDataPathLocked()
	c.router = engine.NewRouter(engine.Options{
		Executor:      p.exec,
		MaxTunnels:    p.cfg.MaxTunnelsPerConn,
		RingSize:      p.cfg.RingSize,
		PendingBuffer: p.cfg.PendingBuffer,
		InitTimeout:   p.cfg.InitTimeout,
		Kinds:         p.kinds,
		Hold:          p.cfg.Hold,
		Sender:        out,
		Logger:        p.log,
		Placement:     placement,
	})
	c.sender = newSender(out, &p.counters)
	if p.cfg.MaxAmplification > 0 {
		c.amp = newAmpBudget(int64(p.cfg.MaxAmplification), int64(p.cfg.AmplificationAllowance), received)
	}
	c.rate = newRateLimits(p.cfg.RateConnDatagrams, p.cfg.RateConnBytes, p.cfg.RateBurst)
	p.conns[c] = struct{}{}
	p.connsWG.Add(1)
}

// release ends c once every request handler of it has returned: its router
// and sender stop, and its counters fold into the proxy's.
func (c *proxyConn) release() {
	p := c.p
	c.router.Close() // every tunnel has closed: nothing queues replies any more
	c.sender.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.foldedRouter.Add(c.router.Stats())
	p.counters.senderWakeups.Add(c.sender.wakeups())
	p.mu.Unlock()
}

// topHandler is the handler every request of the connection goes to.
func (p *Proxy) topHandler() http.Handler {
	if p.cfg.Handler != nil {
		return p.cfg.Handler
	}
	return p.MASQUEHandler()
}

// admitTunnel reserves a place under MaxTunnelsPerConn, before the request
// waits for anything.
func (c *proxyConn) admitTunnel() bool {
	limit := int64(c.p.cfg.MaxTunnelsPerConn)
	if n := c.tunnels.Add(1); limit > 0 && n > limit {
		c.tunnels.Add(-1)
		return false
	}
	return true
}

// goAway starts the connection's graceful shutdown.
// Shutdown calls it after setting draining (see h3ready).
func (c *proxyConn) goAway() { c.carrier.goAway() }

// routineReceiveDatagrams is the only reader of the connection's QUIC
// datagrams: it parses the quarter stream ID and hands the payload to the
// router. A datagram whose quarter stream ID does not parse is a connection
// error (RFC 9297 §2.1).
func (c *proxyConn) routineReceiveDatagrams() {
	log := c.p.log
	log.Debug("masqroute: datagram receiver started", "remote", c.qc.RemoteAddr())
	defer log.Debug("masqroute: datagram receiver stopped", "remote", c.qc.RemoteAddr())
	err := c.router.ReceiveDatagrams(c.qc.Context(), c.qc)
	if errors.Is(err, engine.ErrBadDatagram) {
		c.p.counters.datagramErrors.Add(1)
		c.h3.CloseWithError(wire.ErrCodeDatagramError, err.Error())
	}
}
