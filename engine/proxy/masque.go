package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A Request is what the proxy hands a Kind's Start as [engine.Args].Value:
// the HTTP/3 request that asked for the tunnel, its template variables, and
// the way to write capsules back on its stream.
type Request struct {
	// HTTP is the extended CONNECT request. Its Body carries the client's
	// capsules; the proxy reads it (DATAGRAM capsules become datagrams),
	// so a Kind must not.
	HTTP *http.Request
	// Vars are the request's URI template variables, percent-decoded:
	// those of the built-in kinds' templates, of a TemplateKind's, or
	// what a RequestMatcher returned. Never nil; empty for a kind that
	// matches no template.
	Vars map[string]string

	conn   *proxyConn
	stream tunnelStream   // on the connection's carrier (carrier.go)
	dw     datagramWriter // stream, when it carries replies itself (TCP carriers)
	// datagrams: the client takes HTTP/3 datagrams (QUIC datagrams and
	// SETTINGS_H3_DATAGRAM), so replies go as datagrams, not capsules.
	datagrams bool
	w         http.ResponseWriter
	udpTarget *template.Target
	udpBind   bool // Connect-UDP-Bind with a "*" target (udpbind.go)
	ipScope   *ipScopeRequest
	// handler is the kind's Handler. requestKind.Start writes it on the
	// session's init goroutine; the activation that makes StartSession
	// return publishes it to the request goroutine, its only reader.
	handler engine.Handler

	// wmu serializes capsule writes on the stream, and orders them
	// before the end of the handler (see end).
	wmu     sync.Mutex
	endOnce sync.Once
	ended   chan struct{} // closed by end, under wmu
}

// WriteCapsule writes one capsule on the request stream and flushes it. It
// is safe for concurrent use. Once the tunnel has ended it fails with
// net.ErrClosed.
func (r *Request) WriteCapsule(typ uint64, value []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	select {
	case <-r.ended:
		return net.ErrClosed
	default:
	}
	b := wire.AppendCapsule(make([]byte, 0, len(value)+16), typ, value)
	if _, err := r.w.Write(b); err != nil {
		return err
	}
	return http.NewResponseController(r.w).Flush()
}

// writeDatagramCapsule sends an HTTP Datagram payload as a DATAGRAM capsule:
// the return path when the connection has no QUIC datagrams (RFC 9297 §3.5).
func (r *Request) writeDatagramCapsule(contextID uint64, payload []byte) error {
	v := make([]byte, 0, len(payload)+8)
	v = quicvarint.Append(v, contextID)
	v = append(v, payload...)
	return r.WriteCapsule(wire.CapsuleDatagram, v)
}

// writeDatagram sends one reply (context ID and payload) in a DATAGRAM
// capsule: queued on a TCP carrier's stream, or written on an HTTP/3 one.
func (r *Request) writeDatagram(v []byte) error {
	if r.dw != nil {
		return r.dw.tryWriteDatagram(v)
	}
	return r.WriteCapsule(wire.CapsuleDatagram, v)
}

// abort resets both directions of the request's stream with code, unless
// the request has ended (the stream is no longer the tunnel's to touch).
// Any goroutine may call it.
func (r *Request) abort(code wire.ErrorCode) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	select {
	case <-r.ended:
		return
	default:
	}
	r.stream.CancelRead(code)
	r.stream.CancelWrite(code)
}

// end runs once the session's Handler has been closed: no capsule may be
// written after it (the ResponseWriter dies with the HTTP handler), and the
// capsule reader, if still blocked, is stopped so the HTTP handler returns
// and the stream is closed with a FIN.
func (r *Request) end(reason error) {
	r.endOnce.Do(func() {
		r.wmu.Lock()
		close(r.ended)
		r.wmu.Unlock()
		if !errors.Is(reason, engine.ErrStreamReset) { // a reset stream needs nothing more
			r.stream.CancelRead(wire.ErrCodeNoError)
		}
	})
}

// startRequest returns the proxy request a built-in kind's Start was given,
// checked by parsed (which says whether the proxy parsed the request for
// that kind), or an error when the session was started some other way.
func startRequest(args engine.Args, protocol string, parsed func(*Request) bool) (*Request, error) {
	req, ok := args.Value.(*Request)
	if !ok || !parsed(req) {
		return nil, fmt.Errorf("%s session started without a proxy request", protocol)
	}
	return req, nil
}

// requestKind wraps every Kind the proxy serves: match decides whether a
// request is the kind's and fills its Vars (and, for the built-in kinds,
// what their Start reads), and whatever the kind, the request learns when
// its session's Handler has been closed.
type requestKind struct {
	inner engine.Kind
	match func(*Request) error // a *StatusError refuses the request
}

// A RequestMatcher is a session kind that says which requests are its own.
// The proxy asks it, before it starts a session, for every request whose
// :protocol the kind is registered for; a kind that is not a
// RequestMatcher takes every such request, with no template variables.
// The built-in kinds match their URI templates this way too.
type RequestMatcher interface {
	// MatchRequest returns the request's template variables, which
	// become Request.Vars, or an error that refuses the request: a
	// *StatusError chooses the answer, any other error answers 404. It
	// runs on the request's goroutine, before Config.Authorize.
	MatchRequest(r *http.Request) (vars map[string]string, err error)
}

// TemplateKind returns k as a kind whose requests must match the URI
// template tmpl (RFC 6570, absolute; "{authority}" stands for whatever
// authority the client reached the proxy under): a request whose URI does
// not match is answered 404, and k's Start finds the variables, percent-
// decoded, in Request.Vars. Register the result for k's :protocol.
func TemplateKind(tmpl string, k engine.Kind) (engine.Kind, error) {
	t, err := template.Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("masqroute: kind template: %w", err)
	}
	return &templateKind{Kind: k, tmpl: t}, nil
}

type templateKind struct {
	engine.Kind
	tmpl *template.Template
}

func (k *templateKind) MatchRequest(r *http.Request) (map[string]string, error) {
	vars, ok := k.tmpl.Match(requestURI(r))
	if !ok {
		return nil, errPathMismatch
	}
	return vars, nil
}

// requestURI is the absolute URI a template is matched against.
func requestURI(r *http.Request) string { return "https://" + r.Host + r.RequestURI }

// errPathMismatch answers a request whose URI is not its kind's template.
var errPathMismatch = &StatusError{Status: http.StatusNotFound, ProxyError: proxyErrHTTPRequestError,
	Details: "path does not match the URI template"}

// wrapKind makes k a kind the proxy serves: match is the built-in kinds'
// own matcher; other kinds are asked through RequestMatcher.
func wrapKind(k engine.Kind, match func(*Request) error) requestKind {
	if match != nil {
		return requestKind{inner: k, match: match}
	}
	m, ok := k.(RequestMatcher)
	if !ok {
		return requestKind{inner: k, match: func(req *Request) error {
			req.Vars = map[string]string{}
			return nil
		}}
	}
	return requestKind{inner: k, match: func(req *Request) error {
		vars, err := m.MatchRequest(req.HTTP)
		if err != nil {
			if se, ok := errors.AsType[*StatusError](err); ok {
				return se
			}
			return &StatusError{Status: http.StatusNotFound, ProxyError: proxyErrHTTPRequestError,
				Details: "request not served by this kind", Err: err}
		}
		if vars == nil {
			vars = map[string]string{}
		}
		req.Vars = vars
		return nil
	}}
}

// matchUDP is the built-in CONNECT-UDP kind's matcher: Config.UDPTemplate,
// and a target host and port that parse (400 otherwise).
func (p *Proxy) matchUDP(req *Request) error {
	vars, ok := p.udpTmpl.Match(requestURI(req.HTTP))
	if !ok {
		return errPathMismatch
	}
	if bind, err := matchBind(req.HTTP, vars["target_host"], vars["target_port"]); bind || err != nil {
		req.Vars, req.udpBind = vars, bind
		return err
	}
	target, err := template.ParseHostPort(vars["target_host"], vars["target_port"])
	if err != nil {
		return &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
			Details: err.Error(), Err: err}
	}
	req.Vars, req.udpTarget = vars, &target
	return nil
}

func (k requestKind) Start(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
	h, err := k.inner.Start(ctx, s, args)
	if err != nil || h == nil {
		return h, err
	}
	if req, ok := args.Value.(*Request); ok {
		req.handler = h
		rh := &requestHandler{Handler: h, req: req}
		rh.opened(req.conn.p, s.StreamID()) // observe.go
		return rh, nil
	}
	return h, nil
}

type requestHandler struct {
	engine.Handler
	req *Request
	// For Proxy.Tunnels and Hooks.TunnelEnded (observe.go).
	p       *Proxy
	stream  uint64
	started time.Time
}

// Close closes the kind's Handler (which stops everything of the tunnel
// that could still write to the stream), then ends the request.
func (h *requestHandler) Close(reason error) {
	h.Handler.Close(reason)
	h.req.end(reason)
	h.closed(reason) // observe.go
}

// MASQUEHandler returns the handler for MASQUE requests: extended CONNECT
// with a :protocol a session kind is registered for. Mount it in
// Config.Handler's mux at the template's path if you serve other
// routes too; with no Handler configured, the proxy serves it for every
// request. It answers the bad-input table of docs/protocol.md: 405 for a
// method other than CONNECT, 501 for an unsupported :protocol, 404 when the
// path does not match the template, 400 for a bad target, 403 for a target
// the policy refuses, 502 when the target cannot be reached, 503 at the
// tunnel limit or while draining — each with a Proxy-Status header.
//
// It works only on connections the Proxy serves (Serve, ServeConn).
func (p *Proxy) MASQUEHandler() http.Handler { return http.HandlerFunc(p.serveMASQUE) }

func (p *Proxy) refuse(w http.ResponseWriter, e *StatusError, reason *counterVec) {
	reason.inc(e.Status)
	writeStatus(w, p.cfg.Name, e)
}

// serveMASQUE serves one MASQUE request: it checks it, opens the tunnel and
// carries the request stream's capsules until the tunnel ends.
//
// Its goroutine lives as long as the tunnel, almost all of it parked in
// readCapsules. What sits on its stack then decides the stack's size: Go
// shrinks a stack at GC only while less than a quarter of it is in use, and
// a setup path that once grew it to 16 KiB kept it there for every idle
// tunnel. So the setup runs in functions that return before the capsule
// loop starts (acceptMASQUE, openTunnel; kept out of line), and the frames
// left under the loop are small.
func (p *Proxy) serveMASQUE(w http.ResponseWriter, r *http.Request) {
	if p.isConnectTCP(r) { // classic CONNECT: connecttcp.go
		p.serveConnectTCP(w, r)
		return
	}
	c, req, proto, ok := p.acceptMASQUE(w, r)
	if !ok {
		p.refused(w, r) // observe.go
		return
	}
	s, pc, ok := p.openTunnel(w, r, c, req, proto)
	if !ok {
		p.refused(w, r)
		return
	}
	defer p.releaseTunnel(c)
	defer pc.live.Add(-1)
	ch, _ := req.handler.(capsuleHandler)
	p.readCapsules(c, s, req, ch)
}

// acceptMASQUE checks that r is a MASQUE request for a kind the proxy
// serves and answers it if not.
//
//go:noinline
func (p *Proxy) acceptMASQUE(w http.ResponseWriter, r *http.Request) (c *proxyConn, req *Request, proto string, ok bool) {
	if c, ok = p.requestConn(w, r); !ok {
		return nil, nil, "", false
	}
	method, proto := c.carrier.protocol(r)
	if method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		p.refuse(w, &StatusError{Status: http.StatusMethodNotAllowed, ProxyError: proxyErrHTTPRequestError,
			Details: "MASQUE needs extended CONNECT"}, &p.counters.rejected)
		return nil, nil, "", false
	}
	kind, err := p.kinds.Select(engine.Args{Protocol: proto})
	if proto == "" || proto == "HTTP/3.0" || err != nil {
		p.refuse(w, &StatusError{Status: http.StatusNotImplemented, ProxyError: proxyErrHTTPRequestError,
			Details: "unsupported :protocol"}, &p.counters.rejected)
		return nil, nil, "", false
	}
	req = &Request{HTTP: r, conn: c, w: w, ended: make(chan struct{})}
	if err := kind.(requestKind).match(req); err != nil { // New wraps every kind
		p.refuse(w, asStatusError(err), &p.counters.rejected)
		return nil, nil, "", false
	}
	return c, req, proto, true
}

// openTunnel authorizes, starts the session and answers 200. On success the
// tunnel holds its places under MaxTunnelsPerConn and MaxTunnels and counts
// as live for its protocol; the caller releases them when the tunnel ends.
//
//go:noinline
func (p *Proxy) openTunnel(w http.ResponseWriter, r *http.Request, c *proxyConn, req *Request, proto string) (s *engine.Session, pc *protoCounts, ok bool) {
	if !p.authorizeOpen(w, r) {
		return nil, nil, false
	}
	str, ok := c.carrier.requestStream(w, r)
	if !ok {
		p.refuse(w, &StatusError{Status: http.StatusInternalServerError, ProxyError: proxyErrConfigurationError,
			Details: "no request stream"}, &p.counters.rejected)
		return nil, nil, false
	}
	req.stream = str
	req.dw, _ = str.(datagramWriter)
	// The limits first: nothing below waits before they are applied.
	if !p.admitRequest(w, c) {
		return nil, nil, false
	}
	// The peer's SETTINGS say whether it takes HTTP/3 datagrams (RFC 9297
	// §2.1.1); clients send them first thing, so this rarely waits, and
	// never longer than HeaderTimeout.
	datagrams, ok := c.carrier.peerDatagrams(r.Context())
	if !ok {
		p.releaseTunnel(c)
		if r.Context().Err() == nil {
			p.refuse(w, &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
				Details: "no SETTINGS from the client in time"}, &p.counters.rejected)
		}
		return nil, nil, false
	}
	req.datagrams = datagrams

	id := uint64(str.StreamID())
	t0 := time.Now()
	s, err := c.router.StartSession(r.Context(), id, engine.Args{Protocol: proto, Value: req})
	p.setupDone(proto, t0, err) // observe.go
	if err != nil {
		p.releaseTunnel(c)
		se := asStatusError(err)
		p.log.Debug("masqroute: tunnel refused", "stream", id, "status", se.Status, "error", err)
		p.refuse(w, se, &p.counters.rejected)
		return nil, nil, false
	}
	p.counters.tunnelsOpened.Add(1)
	pc = p.byProto[proto]
	pc.opened.Add(1)
	pc.live.Add(1)
	w.Header().Set("Capsule-Protocol", "?1")
	req.wmu.Lock()
	w.WriteHeader(http.StatusOK)
	err = http.NewResponseController(w).Flush()
	req.wmu.Unlock()
	if err != nil {
		c.router.Unregister(id)
		<-req.ended
		pc.live.Add(-1)
		p.releaseTunnel(c)
		return nil, nil, false
	}
	if e, ok := req.handler.(establisher); ok {
		e.Established()
	}
	return s, pc, true
}

// waitSettings waits, at most HeaderTimeout, for the client's SETTINGS.
func (c *proxyConn) waitSettings(ctx context.Context) bool {
	select {
	case <-c.h3.PeerSettings():
		return true
	default:
	}
	t := time.NewTimer(c.p.cfg.HeaderTimeout)
	defer t.Stop()
	select {
	case <-c.h3.PeerSettings():
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// establisher is a Handler that wants to know when its 2xx has been sent:
// capsules may only follow it (CONNECT-IP's address assignment does).
type establisher interface{ Established() }

// capsuleHandler is a Handler that takes capsule types besides DATAGRAM.
// HandleCapsule runs on the request's goroutine, not the session's, one
// capsule at a time; an error aborts the stream with H3_MESSAGE_ERROR.
type capsuleHandler interface {
	Capsules() []uint64
	HandleCapsule(typ uint64, value []byte) error
}

// readCapsules reads the client's capsules until the stream or the session
// ends. DATAGRAM capsules are dispatched like QUIC datagrams; unknown types
// are skipped; a malformed or oversize capsule resets the stream with
// H3_MESSAGE_ERROR (RFC 9297 §3.3).
func (p *Proxy) readCapsules(c *proxyConn, s *engine.Session, req *Request, ch capsuleHandler) {
	id := s.StreamID()
	var extra []uint64
	if ch != nil {
		extra = ch.Capsules()
	}
	wanted := func(t uint64) bool { return t == wire.CapsuleDatagram || slices.Contains(extra, t) }
	cr := wire.NewCapsuleReader(req.HTTP.Body, p.cfg.MaxCapsule, wanted)
	for {
		typ, value, err := cr.Next()
		if err == nil && typ == wire.CapsuleDatagram {
			p.counters.capsuleDatagrams.Add(1)
			// Sizes are checked before the copy: an empty or oversize
			// capsule never takes a buffer or a place in the ring.
			switch {
			case len(value) == 0:
				p.counters.capsuleMalformed.Add(1) // not even a context ID
			case len(value) > p.maxCapsuleDatagram:
				p.counters.capsuleOversize.Add(1)
			default:
				c.router.Dispatch(id, append([]byte(nil), value...))
			}
			continue
		}
		if err == nil {
			if err = ch.HandleCapsule(typ, value); err == nil {
				continue
			}
			err = errors.Join(wire.ErrMalformedCapsule, err)
		}
		p.capsulesEnded(c, s, req, err)
		return
	}
}

// capsulesEnded ends the tunnel whose capsule stream stopped with err, and
// returns once its Handler is closed. (Out of line, to keep readCapsules'
// frame small: see serveMASQUE.)
//
//go:noinline
func (p *Proxy) capsulesEnded(c *proxyConn, s *engine.Session, req *Request, err error) {
	id := s.StreamID()
	{
		select {
		case <-req.ended: // the session ended first and stopped us
			return
		default:
		}
		var serr *quic.StreamError
		switch {
		case errors.Is(err, io.EOF):
			// The client closed its side: the tunnel is over (RFC 9298 §3).
			c.router.Unregister(id)
		case errors.As(err, &serr) && serr.Remote:
			c.router.Reset(id)
		case errors.Is(err, wire.ErrCapsuleTooLarge), errors.Is(err, wire.ErrMalformedCapsule):
			p.counters.capsuleErrors.Add(1)
			req.stream.CancelRead(wire.ErrCodeMessageError)
			req.stream.CancelWrite(wire.ErrCodeMessageError)
			s.CloseWithError(err)
		default: // the connection is gone
			c.router.Unregister(id)
		}
		// Return only once the Handler is closed: the ResponseWriter must
		// outlive every capsule write.
		<-req.ended
		return
	}
}

// requestConn finds the connection a request came on and checks its bearer
// token: authentication first, so a client without credentials learns
// nothing of the templates or the policy. It answers the refusal itself.
func (p *Proxy) requestConn(w http.ResponseWriter, r *http.Request) (*proxyConn, bool) {
	c, ok := r.Context().Value(connKey{}).(*proxyConn)
	if !ok {
		p.refuse(w, &StatusError{Status: http.StatusInternalServerError, ProxyError: proxyErrConfigurationError,
			Details: "MASQUE handler not served by a masqroute Proxy"}, &p.counters.rejected)
		return nil, false
	}
	if p.cfg.Tokens != nil {
		if se := p.checkToken(r); se != nil {
			p.refuse(w, se, &p.counters.rejected)
			return nil, false
		}
	}
	return c, true
}

// authorizeOpen runs the Authorize hook and refuses while draining; it
// answers the refusal itself.
func (p *Proxy) authorizeOpen(w http.ResponseWriter, r *http.Request) bool {
	if p.cfg.Authorize != nil {
		if err := p.cfg.Authorize(r); err != nil {
			p.refuse(w, authRefusal(err), &p.counters.rejected)
			return false
		}
	}
	if p.draining.Load() {
		p.refuse(w, &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrHTTPRequestDenied,
			Details: "proxy is shutting down"}, &p.counters.rejected)
		return false
	}
	return true
}

// admitRequest takes a place under MaxTunnelsPerConn and MaxTunnels, or
// answers 503; the caller gives them back with releaseTunnel.
func (p *Proxy) admitRequest(w http.ResponseWriter, c *proxyConn) bool {
	if !c.admitTunnel() {
		p.refuse(w, asStatusError(engine.ErrTooManyTunnels), &p.counters.rejected)
		return false
	}
	if !p.admitTunnel() {
		c.tunnels.Add(-1)
		p.refuse(w, asStatusError(engine.ErrTooManyTunnels), &p.counters.rejected)
		return false
	}
	return true
}
