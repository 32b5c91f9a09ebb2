package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqroute/masqroute/engine/internal/h3"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// CONNECT for TCP (RFC 9114 §4.4 over HTTP/3, RFC 9113 §8.5 over HTTP/2):
// a request with method CONNECT, no :protocol, and the target in
// :authority. The request body is the client's byte stream, the response
// body the target's. The carrier supplies the stream (carrier.connectStream:
// h3TCPStream, h2TCPStream); from there on the code is the same. Per
// tunnel:
//
//	client → target (the request's goroutine): body Read → TCP Write;
//	    the client's FIN → CloseWrite on the TCP connection
//	target → client (one goroutine of the tunnel's): TCP Read → stream
//	    Write + flush; the target's FIN → the stream's FIN (CloseWrite)
//
// Each direction owns one buffer of tcpCopyBuffer bytes and nothing else:
// a Write that the peer's flow control holds back blocks its direction, so
// that direction stops reading, and the backpressure reaches the sender
// (QUIC flow control toward the client, the TCP window toward the target).
// A slow reader therefore costs the proxy at most the two buffers.
//
// An error in either direction (a reset from the client, a TCP RST or a
// failed write) aborts both: the TCP connection is closed and the stream
// reset (H3_CONNECT_ERROR over HTTP/3, as §4.4 asks for a TCP error; over
// HTTP/2 net/http resets with INTERNAL_ERROR, the only code it offers).
//
// TCP tunnels are not sessions of the connection's router (they carry no
// HTTP Datagrams); they take the same places under MaxTunnelsPerConn and
// MaxTunnels, the same auth and the same target policy. They have no idle
// timeout of their own (a TCP connection may rightly sit idle for hours);
// the QUIC connection's idle timeout bounds dead clients (over HTTP/2,
// TCP keepalives on the client's connection).

// tcpCopyBuffer is the buffer of one direction of one tunnel.
const tcpCopyBuffer = 32 << 10

// tcpCounters are the proxy's TCP tunnel totals.
type tcpCounters struct {
	opened        atomic.Uint64
	live          atomic.Int64
	toTargetBytes atomic.Uint64
	toClientBytes atomic.Uint64
	clientFIN     atomic.Uint64 // client ended its side: CloseWrite on the TCP connection
	targetFIN     atomic.Uint64 // target ended its side: FIN on the stream
	aborted       atomic.Uint64 // ended by an error in either direction
}

// TCPStats are the CONNECT (TCP) tunnels' counters; see Stats.TCP.
type TCPStats struct {
	Opened        uint64 // tunnels answered 200
	Live          int64  // tunnels now
	ToTargetBytes uint64 // bytes written to targets
	ToClientBytes uint64 // bytes sent to clients
	ClientFIN     uint64 // half-closes from clients, passed on as TCP FIN
	TargetFIN     uint64 // half-closes from targets, passed on as stream FIN
	Aborted       uint64 // tunnels ended by a reset or an I/O error
}

func (c *tcpCounters) snapshot() TCPStats {
	return TCPStats{
		Opened:        c.opened.Load(),
		Live:          c.live.Load(),
		ToTargetBytes: c.toTargetBytes.Load(),
		ToClientBytes: c.toClientBytes.Load(),
		ClientFIN:     c.clientFIN.Load(),
		TargetFIN:     c.targetFIN.Load(),
		Aborted:       c.aborted.Load(),
	}
}

// isConnectTCP reports whether r is a classic CONNECT the proxy serves.
func (p *Proxy) isConnectTCP(r *http.Request) bool {
	return p.cfg.ConnectTCP && isClassicConnect(r)
}

// isClassicConnect reports whether r is a CONNECT without :protocol over
// HTTP/3 or HTTP/2. HTTP/1.1's CONNECT is not served: its tunnels are the
// upgrades of h1carrier.go.
func isClassicConnect(r *http.Request) bool {
	if r.Method != http.MethodConnect {
		return false
	}
	switch r.ProtoMajor {
	case 3:
		return r.Proto == "HTTP/3.0" // an extended CONNECT has its :protocol there
	case 2:
		return r.Header.Get(":protocol") == ""
	}
	return false
}

// serveConnectTCP serves one CONNECT request: auth, limits, policy, dial,
// 200, then the two copy loops until both directions have ended.
func (p *Proxy) serveConnectTCP(w http.ResponseWriter, r *http.Request) {
	c, st, tc, ok := p.openTCP(w, r)
	if !ok {
		p.refused(w, r) // observe.go
		return
	}
	defer p.releaseTunnel(c)
	p.tcp.opened.Add(1)
	p.tcp.live.Add(1)
	defer p.tcp.live.Add(-1)
	t := &tcpTunnel{stream: st.streamID(), target: tc.RemoteAddr().String(), client: r.RemoteAddr, started: time.Now()}
	p.liveTunnels.Store(t, struct{}{}) // observe.go
	reason := "closed"
	if p.spliceTCP(st, tc, t) {
		reason = "aborted"
	}
	p.tunnelEnded(t, reason)
}

// A tcpTunnel is one CONNECT (TCP) tunnel as Proxy.Tunnels and
// Hooks.TunnelEnded show it.
type tcpTunnel struct {
	stream         uint64 // byteStream.streamID
	target, client string
	started        time.Time
	toTargetBytes  atomic.Uint64
	toClientBytes  atomic.Uint64
}

func (t *tcpTunnel) info(now time.Time) TunnelInfo {
	return TunnelInfo{
		Stream:        t.stream,
		Kind:          KindConnectTCP,
		Target:        t.target,
		Client:        t.client,
		Started:       t.started,
		Duration:      now.Sub(t.started),
		ToTargetBytes: t.toTargetBytes.Load(),
		ToClientBytes: t.toClientBytes.Load(),
	}
}

// openTCP checks, admits and dials a CONNECT request and answers 200, or
// answers the refusal.
//
//go:noinline
func (p *Proxy) openTCP(w http.ResponseWriter, r *http.Request) (c *proxyConn, st byteStream, tc *net.TCPConn, ok bool) {
	if c, ok = p.requestConn(w, r); !ok {
		return nil, nil, nil, false
	}
	target, err := connectTarget(r.Host)
	if err != nil {
		p.refuse(w, &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
			Details: err.Error(), Err: err}, &p.counters.rejected)
		return nil, nil, nil, false
	}
	if !p.authorizeOpen(w, r) {
		return nil, nil, nil, false
	}
	if st, ok = c.carrier.connectStream(w, r); !ok {
		p.refuse(w, &StatusError{Status: http.StatusInternalServerError, ProxyError: proxyErrConfigurationError,
			Details: "no request stream"}, &p.counters.rejected)
		return nil, nil, nil, false
	}
	if !p.admitRequest(w, c) {
		return nil, nil, nil, false
	}
	tc, err = p.dialTCP(r.Context(), target)
	if err != nil {
		p.releaseTunnel(c)
		p.refuse(w, asStatusError(err), &p.counters.rejected)
		return nil, nil, nil, false
	}
	p.counters.tunnelsOpened.Add(1)
	w.WriteHeader(http.StatusOK)
	if err := http.NewResponseController(w).Flush(); err != nil {
		tc.Close()
		p.releaseTunnel(c)
		return nil, nil, nil, false
	}
	return c, st, tc, true
}

// connectTarget parses a CONNECT request's authority: host:port, the port
// required (RFC 9110 §9.3.6).
func connectTarget(authority string) (template.Target, error) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return template.Target{}, errors.New("CONNECT authority is not host:port")
	}
	return template.ParseHostPort(host, port)
}

// dialTCP resolves t, checks the policy against every candidate address,
// and connects to the first allowed one.
func (p *Proxy) dialTCP(ctx context.Context, t template.Target) (*net.TCPConn, error) {
	addr, err := p.resolveAllowed(ctx, t)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: p.cfg.ResolveTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		p.counters.tunnelFailDial.Add(1)
		return nil, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDestUnavailable,
			Details: "cannot reach target", Err: err}
	}
	return conn.(*net.TCPConn), nil
}

// A byteStream is the client's side of a TCP tunnel as the copy loops see
// it, whatever carries it: an HTTP/3 request stream (h3TCPStream) or an
// HTTP/2 one (h2TCPStream).
type byteStream interface {
	// Read reads the client's bytes; io.EOF is the client's FIN.
	// errReadCut: the carrier stopped the client's side when CloseWrite
	// ended the response (HTTP/2).
	io.Reader
	// Write sends bytes to the client and flushes them; it blocks while
	// flow control holds them back.
	io.Writer
	// CloseWrite ends the bytes toward the client (FIN).
	CloseWrite() error
	// Abort resets both directions (H3_CONNECT_ERROR); any goroutine may
	// call it, while Read or Write block.
	Abort()
	// streamID is the request stream's ID for Proxy.Tunnels: 0 over
	// HTTP/2, where net/http does not tell it.
	streamID() uint64
}

// tcpTarget is the target side: *net.TCPConn, or a test's stand-in.
type tcpTarget interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// spliceTCP copies both directions until both have ended; see the top of
// the file. The first error in either direction aborts the tunnel at once,
// which unblocks the other. It closes tc, and reports whether the tunnel
// was aborted.
func (p *Proxy) spliceTCP(st byteStream, tc tcpTarget, t *tcpTunnel) (aborted bool) {
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			aborted = true
			p.tcp.aborted.Add(1)
			tc.Close()
			st.Abort()
		})
	}
	down := make(chan struct{})
	go func() {
		defer close(down)
		if err := p.routineTCPToClient(st, tc, t); err != nil {
			abort()
		}
	}()
	if err := p.copyTCPToTarget(st, tc, t); err != nil {
		abort()
	}
	<-down
	tc.Close()
	return aborted
}

// copyTCPToTarget copies the client's bytes to the target; at the client's
// FIN it half-closes the TCP connection and returns nil.
func (p *Proxy) copyTCPToTarget(st byteStream, tc tcpTarget, t *tcpTunnel) error {
	buf := make([]byte, tcpCopyBuffer)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if _, werr := tc.Write(buf[:n]); werr != nil {
				return werr
			}
			p.tcp.toTargetBytes.Add(uint64(n))
			t.toTargetBytes.Add(uint64(n))
		}
		if errors.Is(err, io.EOF) {
			p.tcp.clientFIN.Add(1)
			return tc.CloseWrite()
		}
		if errors.Is(err, errReadCut) {
			return nil // the tunnel is over; spliceTCP closes tc
		}
		if err != nil {
			return err
		}
	}
}

// routineTCPToClient copies the target's bytes to the client; at the
// target's FIN it ends the stream's send side and returns nil.
func (p *Proxy) routineTCPToClient(st byteStream, tc tcpTarget, t *tcpTunnel) error {
	buf := make([]byte, tcpCopyBuffer)
	for {
		n, err := tc.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				return werr
			}
			p.tcp.toClientBytes.Add(uint64(n))
			t.toClientBytes.Add(uint64(n))
		}
		if errors.Is(err, io.EOF) {
			p.tcp.targetFIN.Add(1)
			return st.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// h3TCPStream is a byteStream over an HTTP/3 request stream: the body, the
// proxy's ResponseWriter (which has CloseWrite), and the stream to reset.
type h3TCPStream struct {
	body io.Reader
	w    http.ResponseWriter
	str  h3.Stream
}

func (s *h3TCPStream) Read(b []byte) (int, error) { return s.body.Read(b) }

func (s *h3TCPStream) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	if err == nil {
		err = http.NewResponseController(s.w).Flush()
	}
	return n, err
}

func (s *h3TCPStream) CloseWrite() error {
	cw, ok := s.w.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("masqroute: response cannot be half-closed")
	}
	return cw.CloseWrite()
}

func (s *h3TCPStream) Abort() {
	s.str.CancelRead(wire.ErrCodeConnectError)
	s.str.CancelWrite(wire.ErrCodeConnectError)
}

func (s *h3TCPStream) streamID() uint64 { return uint64(s.str.StreamID()) }
