package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine"
)

// CONNECT-UDP in quic-go's own http3.Server: for a program that serves
// HTTP/3 with quic-go already (a masque-go user, say) and wants masqroute's
// CONNECT-UDP handling without handing its connections over.
//
// It is the stock quic-go datagram path, not masqroute's: quic-go's HTTP/3
// layer demultiplexes each connection's datagrams (one goroutine per
// connection, a mutex-guarded map, a 32-datagram queue per stream that
// drops silently when full), and each tunnel runs two goroutines of its own:
//
//	client → target: http3.Stream.ReceiveDatagram → context ID check → net.UDPConn.Write
//	target → client: net.UDPConn.Read → context ID 0 in front → http3.Stream.SendDatagram
//
// one datagram per system call and per wake-up each way, no router, no
// executor, no batching. It is slower than Serve and ServeConn; the
// end-to-end benchmark's stock-quic-go baseline (bench/e2e/baseline) is
// this handler, so docs/benchmarks.md gives the difference.

// HTTP3Handler returns a CONNECT-UDP handler for quic-go's http3.Server
// (EnableDatagrams on, and a quic.Config from QUICConfig or with datagrams
// enabled). It applies the proxy's Config as the MASQUE handler does:
// UDPTemplate (404), Authorize, Policy after resolution with Resolver and
// ResolveTimeout (403, 502), MaxTunnels, and Proxy-Status on every refusal;
// Stats count its tunnels, and Shutdown and Close end them. It does not
// apply IdleTimeout (quic-go's connection idle timeout still does) or
// MaxDatagramPayload on replies beyond what one read takes, and it ignores
// DATAGRAM capsules: it carries QUIC datagrams only. Kinds and IP are for
// Serve and ServeConn.
//
// Mount it at the template's path:
//
//	mux.Handle("/.well-known/masque/udp/", p.HTTP3Handler())
func (p *Proxy) HTTP3Handler() http.Handler { return http.HandlerFunc(p.serveStockUDP) }

func (p *Proxy) serveStockUDP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		p.refuse(w, &StatusError{Status: http.StatusMethodNotAllowed, ProxyError: proxyErrHTTPRequestError,
			Details: "MASQUE needs extended CONNECT"}, &p.counters.rejected)
		return
	}
	if r.Proto != engine.ProtocolConnectUDP {
		p.refuse(w, &StatusError{Status: http.StatusNotImplemented, ProxyError: proxyErrHTTPRequestError,
			Details: "unsupported :protocol"}, &p.counters.rejected)
		return
	}
	req := &Request{HTTP: r}
	if err := p.matchUDP(req); err != nil {
		p.refuse(w, asStatusError(err), &p.counters.rejected)
		return
	}
	if p.cfg.Authorize != nil {
		if err := p.cfg.Authorize(r); err != nil {
			p.refuse(w, authRefusal(err), &p.counters.rejected)
			return
		}
	}
	streamer, ok := w.(http3.HTTPStreamer)
	if !ok {
		p.refuse(w, &StatusError{Status: http.StatusInternalServerError, ProxyError: proxyErrConfigurationError,
			Details: "HTTP3Handler not served by quic-go's http3.Server"}, &p.counters.rejected)
		return
	}
	if p.draining.Load() {
		p.refuse(w, &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrHTTPRequestDenied,
			Details: "proxy is shutting down"}, &p.counters.rejected)
		return
	}
	if !p.admitTunnel() {
		p.refuse(w, asStatusError(engine.ErrTooManyTunnels), &p.counters.rejected)
		return
	}
	defer p.releaseTunnel(nil)
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.InitTimeout)
	addr, err := p.resolveAllowed(ctx, *req.udpTarget)
	var conn *net.UDPConn
	if err == nil {
		var d net.Dialer
		var c net.Conn
		if c, err = d.DialContext(ctx, "udp", addr.String()); err == nil {
			conn = c.(*net.UDPConn)
		} else {
			p.counters.tunnelFailDial.Add(1)
			err = &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDestUnavailable,
				Details: "cannot reach target", Err: err}
		}
	}
	cancel()
	if err != nil {
		p.refuse(w, asStatusError(err), &p.counters.rejected)
		return
	}
	t := &stockTunnel{p: p, conn: conn, maxSize: p.cfg.MaxDatagramPayload}
	if !p.trackStock(t, true) {
		conn.Close()
		p.refuse(w, &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrHTTPRequestDenied,
			Details: "proxy is shutting down"}, &p.counters.rejected)
		return
	}
	defer p.trackStock(t, false)
	w.Header().Set("Capsule-Protocol", "?1")
	w.WriteHeader(http.StatusOK)
	str, err := streamer.HTTPStream()
	if err != nil {
		conn.Close()
		return
	}
	p.counters.tunnelsOpened.Add(1)
	pc := p.byProto[engine.ProtocolConnectUDP]
	pc.opened.Add(1)
	pc.live.Add(1)
	defer pc.live.Add(-1)
	t.run(str)
}

// authRefusal is the answer to an Authorize error.
func authRefusal(err error) *StatusError {
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se
	}
	return &StatusError{Status: http.StatusForbidden, ProxyError: proxyErrHTTPRequestDenied,
		Details: "not authorized", Err: err}
}

// stockTunnel is one CONNECT-UDP tunnel on quic-go's datagram path.
type stockTunnel struct {
	p       *Proxy
	conn    *net.UDPConn
	maxSize int
	str     *http3.Stream // set by run before anything can end it
	c       tunnelCounters
}

// trackStock adds t to the proxy's stock tunnels, which Close ends, or
// removes it; adding fails once the proxy is closed.
func (p *Proxy) trackStock(t *stockTunnel, live bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !live {
		delete(p.stock, t)
		p.stockWG.Done()
		return true
	}
	if p.closed {
		return false
	}
	if p.stock == nil {
		p.stock = make(map[*stockTunnel]struct{})
	}
	p.stock[t] = struct{}{}
	p.stockWG.Add(1)
	return true
}

// end stops the tunnel from outside (Proxy.Close): the socket closes, which
// ends the reader, and the stream's read side is cancelled, which ends run.
func (t *stockTunnel) end() {
	t.conn.Close()
	if t.str != nil {
		t.str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	}
}

// run carries the tunnel's datagrams until the client closes the stream,
// the connection ends or the proxy closes.
func (t *stockTunnel) run(str *http3.Stream) {
	t.p.mu.Lock()
	t.str = str
	closed := t.p.closed
	t.p.mu.Unlock()
	if closed {
		t.end()
	}
	t.p.trackTunnel(&t.c, true)
	defer t.p.trackTunnel(&t.c, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); t.routineStockToTarget(ctx, str) }()
	go func() { defer func() { done <- struct{}{} }(); t.routineStockToClient(str) }()
	// The stream carries no capsules we act on; its end ends the tunnel.
	_, _ = io.Copy(io.Discard, str)
	cancel()
	t.conn.Close()
	str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	str.Close()
	<-done
	<-done
}

// routineStockToTarget writes the client's datagrams to the target.
func (t *stockTunnel) routineStockToTarget(ctx context.Context, str *http3.Stream) {
	for {
		d, err := str.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		payload, ok := t.c.contextZero(d)
		if !ok {
			continue
		}
		if len(payload) > t.maxSize {
			t.c.dropOversize.Add(1)
			continue
		}
		if _, err := t.conn.Write(payload); err != nil {
			t.c.dropSendError.Add(1)
			continue
		}
		t.c.toTarget.Add(1)
		t.c.toTargetBytes.Add(uint64(len(payload)))
	}
}

// routineStockToClient sends the target's replies to the client.
func (t *stockTunnel) routineStockToClient(str *http3.Stream) {
	buf := make([]byte, 1+t.maxSize+1) // one byte more: a longer reply is too large
	for {
		n, err := t.conn.Read(buf[1:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.c.targetUnreachable.Add(1) // an ICMP error from the target
			continue
		}
		if n > t.maxSize {
			t.c.dropReturnOversize.Add(1)
			continue
		}
		buf[0] = 0 // context ID 0
		if err := str.SendDatagram(buf[:1+n]); err != nil {
			t.c.countReturnError(err)
			continue
		}
		t.c.toClient.Add(1)
		t.c.toClientBytes.Add(uint64(n))
	}
}
