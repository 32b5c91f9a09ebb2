package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// The TCP carriers: HTTP/2 (h2carrier.go) and HTTP/1.1 (h1carrier.go) on a
// TLS listener, for clients whose UDP is blocked. Each TCP connection is a
// proxyConn like a QUIC one, with its own router, sender and limits; its
// carrier is a tcpCarrier. net/http serves the connection; every request
// goes through tcpServer.ServeHTTP, which gives a tunnel request its stream and
// then hands it to the same handler as HTTP/3 (topHandler).
//
// HTTP/2 extended CONNECT (RFC 8441) needs GODEBUG=http2xconnect=1 in the
// process environment (net/http reads it at init; without it the server
// does not send SETTINGS_ENABLE_CONNECT_PROTOCOL and refuses :protocol).
// ServeTCP does not check it: the daemon sets it by re-executing itself,
// and tests by TestMain.

// TCPOptions say what ServeTCP serves.
type TCPOptions struct {
	// H2 serves HTTP/2 (ALPN "h2"), H1 HTTP/1.1 with Upgrade (ALPN
	// "http/1.1"). At least one must be set.
	H2, H1 bool
	// AltSvc, if not empty, is sent in an Alt-Svc header on every
	// response, e.g. `h3=":443"; ma=86400`, so that clients that came
	// over TCP move to HTTP/3. AltSvcH3 builds it.
	AltSvc string
}

// AltSvcH3 is the Alt-Svc value advertising HTTP/3 on port.
func AltSvcH3(port int) string { return `h3=":` + strconv.Itoa(port) + `"; ma=86400` }

// ServeTCP serves the TCP carriers on ln, a TCP listener, with TLS from
// tlsConf (its certificates; NextProtos is set from opts), until ln fails
// or Shutdown or Close is called. The same Config applies as on HTTP/3:
// templates, kinds, auth, policy, limits and counters; MaxConns counts TCP
// and QUIC connections together.
func (p *Proxy) ServeTCP(ln net.Listener, tlsConf *tls.Config, opts TCPOptions) error {
	if !opts.H2 && !opts.H1 {
		return errors.New("masqroute: ServeTCP needs H2 or H1")
	}
	tc := p.TLSConfig(tlsConf)
	tc.NextProtos = nil
	if opts.H2 {
		tc.NextProtos = append(tc.NextProtos, "h2")
	}
	if opts.H1 {
		tc.NextProtos = append(tc.NextProtos, "http/1.1")
	}
	var protos http.Protocols
	protos.SetHTTP1(opts.H1)
	protos.SetHTTP2(opts.H2)
	s := &tcpServer{p: p, opts: opts}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: p.cfg.HeaderTimeout,
		ConnContext:       s.connContext,
		ConnState:         s.connState,
		ErrorLog:          log.New(io.Discard, "", 0),
		Protocols:         &protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: p.maxStreamsTCP()},
	}
	p.mu.Lock()
	if p.closed || p.draining.Load() {
		p.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	if p.tcpListeners == nil {
		p.tcpListeners = make(map[net.Listener]*tcpServer)
	}
	p.tcpListeners[ln] = s
	p.mu.Unlock()
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		p.addListenAddr(&net.UDPAddr{IP: a.IP, Port: a.Port, Zone: a.Zone}) // its own address is no target either
	}
	defer func() {
		p.mu.Lock()
		delete(p.tcpListeners, ln)
		p.mu.Unlock()
	}()
	err := s.srv.Serve(tls.NewListener(&tcpListener{Listener: ln, s: s}, tc))
	if p.draining.Load() || errors.Is(err, net.ErrClosed) {
		return http.ErrServerClosed
	}
	return err
}

// maxStreamsTCP is an HTTP/2 connection's concurrent stream limit: the
// tunnel limit and a few ordinary requests, as for QUIC.
func (p *Proxy) maxStreamsTCP() int {
	if p.cfg.MaxTunnelsPerConn == 0 {
		return 1 << 16
	}
	return p.cfg.MaxTunnelsPerConn + 16
}

// closeTCPListenersLocked closes ServeTCP's listeners. The caller holds
// p.mu.
func (p *Proxy) closeTCPListenersLocked() {
	for ln := range p.tcpListeners {
		ln.Close()
	}
}

// A tcpServer is one ServeTCP.
type tcpServer struct {
	p    *Proxy
	opts TCPOptions
	srv  *http.Server
}

// tcpListener makes a proxyConn of every accepted TCP connection, or
// closes it at once when the proxy is closing or at MaxConns.
type tcpListener struct {
	net.Listener
	s *tcpServer
}

func (l *tcpListener) Accept() (net.Conn, error) {
	p := l.s.p
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release := func() {}
		if p.addrs != nil {
			if release, err = p.addrs.admit(nc.RemoteAddr()); err != nil {
				nc.Close() // counted by the limiter, as for QUIC
				continue
			}
		}
		p.mu.Lock()
		if p.closed || p.draining.Load() {
			p.mu.Unlock()
			release()
			nc.Close()
			continue
		}
		if p.cfg.MaxConns > 0 && len(p.conns) >= p.cfg.MaxConns {
			p.mu.Unlock()
			release()
			p.counters.connsRejected.Add(1)
			nc.Close()
			continue
		}
		tc := &tcpConn{Conn: nc}
		c := &proxyConn{p: p}
		t := &tcpCarrier{c: c, nc: tc, s: l.s, releaseAddr: release}
		c.carrier = t
		tc.t = t
		p.addConnLocked(c, t, tc.received.Load, engine.Placement{})
		p.mu.Unlock()
		p.counters.connsAccepted.Add(1)
		return tc, nil
	}
}

// tcpConn counts the bytes the client sent: the amplification bound's
// "bytes received" on a TCP carrier (TLS records and HTTP framing
// included, as QUIC's count includes its packets).
type tcpConn struct {
	net.Conn
	t        *tcpCarrier
	received atomic.Uint64
}

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.received.Add(uint64(n))
	return n, err
}

// tcpOf returns the tcpConn under a connection net/http hands its hooks.
func tcpOf(nc net.Conn) *tcpConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*tcpConn)
	return c
}

func (s *tcpServer) connContext(ctx context.Context, nc net.Conn) context.Context {
	if c := tcpOf(nc); c != nil {
		return context.WithValue(ctx, connKey{}, c.t.c)
	}
	return ctx
}

// connState ends the proxyConn when net/http is done with the connection.
// A hijacked connection (an HTTP/1.1 tunnel) is its handler's, which ends
// it when it returns.
func (s *tcpServer) connState(nc net.Conn, st http.ConnState) {
	if st != http.StateClosed {
		return
	}
	if c := tcpOf(nc); c != nil {
		c.t.end()
	}
}

// A tcpCarrier is one TCP connection's carrier.
type tcpCarrier struct {
	c  *proxyConn
	nc *tcpConn
	s  *tcpServer
	// nextID numbers the connection's tunnel streams for its router, as
	// QUIC numbers client-initiated bidirectional streams: 0, 4, 8, ...
	nextID  atomic.Uint64
	streams sync.Map // uint64 stream ID → *tcpStream, for SendDatagram

	// releaseAddr gives back the connection's place under the
	// per-address limits (addrlimit.go).
	releaseAddr func()

	mu       sync.Mutex // guards closing and handlers.Add
	closing  bool
	handlers sync.WaitGroup
	endOnce  sync.Once
}

func (t *tcpCarrier) protocol(r *http.Request) (string, string) {
	if st, ok := r.Context().Value(tcpStreamKey{}).(*tcpStream); ok {
		return http.MethodConnect, st.proto
	}
	return r.Method, "" // not a tunnel request (ServeHTTP decides)
}

func (t *tcpCarrier) requestStream(_ http.ResponseWriter, r *http.Request) (tunnelStream, bool) {
	st, ok := r.Context().Value(tcpStreamKey{}).(*tcpStream)
	if !ok {
		return nil, false
	}
	t.streams.Store(uint64(st.id), st)
	return st, true
}

// connectStream: classic CONNECT is served over HTTP/2 only (HTTP/1.1
// tunnels are upgrades).
func (t *tcpCarrier) connectStream(w http.ResponseWriter, r *http.Request) (byteStream, bool) {
	if r.ProtoMajor != 2 {
		return nil, false
	}
	return newH2TCPStream(w, r), true
}

// peerDatagrams: TCP has no datagrams; replies go as DATAGRAM capsules.
func (t *tcpCarrier) peerDatagrams(context.Context) (bool, bool) { return false, true }

func (t *tcpCarrier) closeNow() { t.nc.Close() }

// goAway: nothing per connection. Proxy.Shutdown drains the TCP carriers
// through net/http's Server.Shutdown (GOAWAY on HTTP/2, idle HTTP/1.1
// connections closed), and requests that still come are refused (503)
// while the proxy drains; tunnels go on until they end or Close.
func (t *tcpCarrier) goAway() {}

// SendDatagram is the router's Sender (Session.SendDatagram): frame starts
// with the quarter stream ID, and goes as a DATAGRAM capsule on its stream.
func (t *tcpCarrier) SendDatagram(frame []byte) error {
	q, n, err := quicvarint.Parse(frame)
	if err != nil {
		return fmt.Errorf("masqroute: datagram header: %w", err)
	}
	v, ok := t.streams.Load(q * 4)
	if !ok {
		return net.ErrClosed
	}
	return v.(*tcpStream).tryWriteDatagram(frame[n:])
}

// enter admits a request handler, unless the connection is ending.
func (t *tcpCarrier) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.handlers.Add(1)
	return true
}

func (t *tcpCarrier) leave() { t.handlers.Done() }

// end releases the connection once its last handler has returned. It is
// idempotent and does not wait.
func (t *tcpCarrier) end() {
	t.endOnce.Do(func() {
		t.mu.Lock()
		t.closing = true
		t.mu.Unlock()
		go func() {
			defer t.c.p.connsWG.Done()
			t.handlers.Wait()
			t.nc.Close()
			t.releaseAddr()
			t.c.release()
		}()
	})
}

type tcpStreamKey struct{}

// A tcpStream is one tunnel's stream on a TCP carrier: an HTTP/2 stream or
// an upgraded HTTP/1.1 connection. Its DATAGRAM capsules go through q.
type tcpStream struct {
	*capsuleQueue
	id    quic.StreamID
	proto string
	t     *tcpCarrier
	// cancelRead and cancelWrite are the carrier's: stop reading the
	// client's capsules, reset the stream.
	cancelRead, cancelWrite func()
}

func (st *tcpStream) StreamID() quic.StreamID         { return st.id }
func (st *tcpStream) CancelRead(code wire.ErrorCode)  { st.cancelRead() }
func (st *tcpStream) CancelWrite(code wire.ErrorCode) { st.cancelWrite() }

// newStream numbers a new tunnel stream of the connection.
func (t *tcpCarrier) newStream(proto string, out capsuleOut) *tcpStream {
	return &tcpStream{capsuleQueue: newCapsuleQueue(out), t: t, proto: proto,
		id: quic.StreamID(t.nextID.Add(4) - 4)}
}

// done forgets the stream once its handler is about to return: nothing
// may write to it any more.
func (st *tcpStream) done() {
	st.t.streams.Delete(uint64(st.id))
	st.close()
}

// ServeHTTP is every request of a TCP carrier: a tunnel request gets its
// stream, and every request goes to the proxy's handler.
func (s *tcpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := r.Context().Value(connKey{}).(*proxyConn)
	if !ok {
		http.Error(w, "no connection", http.StatusInternalServerError)
		return
	}
	t := c.carrier.(*tcpCarrier)
	if !t.enter() {
		http.Error(w, "connection closing", http.StatusServiceUnavailable)
		return
	}
	defer t.leave()
	if s.opts.AltSvc != "" {
		w.Header().Set("Alt-Svc", s.opts.AltSvc)
	}
	switch {
	case r.ProtoMajor == 2 && r.Method == http.MethodConnect && r.Header.Get(":protocol") != "":
		s.serveH2Tunnel(t, w, r)
	case r.ProtoMajor == 1 && s.opts.H1 && isUpgradeRequest(r):
		s.serveH1Tunnel(t, w, r)
	default:
		s.p.topHandler().ServeHTTP(w, r)
	}
}

// ExtendedConnectEnv is the environment setting that makes net/http's
// HTTP/2 server accept extended CONNECT (RFC 8441).
const ExtendedConnectEnv = "http2xconnect=1"

// ExtendedConnectEnabled reports whether this process started with
// GODEBUG=http2xconnect=1, without which the HTTP/2 carrier refuses every
// tunnel.
func ExtendedConnectEnabled() bool {
	return slices.Contains(strings.Split(os.Getenv("GODEBUG"), ","), ExtendedConnectEnv)
}

// ReexecWithExtendedConnect re-executes the running program with
// GODEBUG=http2xconnect=1 added, unless it has it already (then it returns
// nil). net/http reads the setting once, at package init, and has no API
// for it, so a process that lacks it must start again. syscall.Exec
// replaces the program in place: the PID, open descriptors without
// close-on-exec, and the parent (a supervisor, a test runner) stay the same.
// It returns only on failure.
func ReexecWithExtendedConnect() error {
	if ExtendedConnectEnabled() {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	godebug := ExtendedConnectEnv
	if old := os.Getenv("GODEBUG"); old != "" {
		godebug = old + "," + ExtendedConnectEnv
	}
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }),
		"GODEBUG="+godebug)
	return syscall.Exec(exe, os.Args, env)
}
