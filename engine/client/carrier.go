package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/http2"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Carriers: what a Conn runs on.
const (
	// CarrierH3 is HTTP/3 on QUIC: datagrams as QUIC DATAGRAM frames.
	CarrierH3 = "h3"
	// CarrierH2 is HTTP/2 on TLS over TCP, extended CONNECT (RFC 8441):
	// one connection, a stream per tunnel, datagrams in DATAGRAM
	// capsules on the stream (RFC 9297).
	CarrierH2 = "h2"
	// CarrierH1 is HTTP/1.1 Upgrade (RFC 9298 §3.2): a TLS connection per
	// tunnel, datagrams in DATAGRAM capsules on it.
	CarrierH1 = "h1"
	// CarrierAuto tries HTTP/3 and, when QUIC has not connected within
	// FallbackDelay (or has failed), HTTP/2 beside it; the first to
	// connect wins.
	CarrierAuto = "auto"
)

// DefaultFallbackDelay is how long CarrierAuto waits for HTTP/3 before it
// also tries HTTP/2.
const DefaultFallbackDelay = 300 * time.Millisecond

// A stream is a tunnel's request stream: an *http3.RequestStream, or a TCP
// carrier's (an HTTP/2 stream, an upgraded HTTP/1.1 connection). Over TCP,
// a Write waits while the stream is backed up (flow control).
type stream interface {
	io.ReadWriteCloser
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
}

// dialAuto races HTTP/3 against HTTP/2, happy-eyeballs style: HTTP/2 starts
// after cfg.FallbackDelay, or at once when HTTP/3 fails. The first
// connection made wins and the other is closed.
func dialAuto(ctx context.Context, addr string, cfg *Config) (*Conn, error) {
	delay := cfg.FallbackDelay
	if delay <= 0 {
		delay = DefaultFallbackDelay
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   *Conn
		err error
	}
	results := make(chan result, 2)
	go func() { c, err := dialH3(ctx, addr, cfg); results <- result{c, err} }()
	startH2 := func() { go func() { c, err := dialTCP(ctx, addr, cfg, CarrierH2); results <- result{c, err} }() }
	timer := time.NewTimer(delay)
	defer timer.Stop()
	started, pending := 1, 1
	var errs []error
	for pending > 0 {
		select {
		case <-timer.C:
			if started == 1 {
				started, pending = 2, pending+1
				startH2()
			}
			continue
		case r := <-results:
			pending--
			if r.err == nil {
				cancel() // the other attempt gives up; close it if it made it anyway
				for range pending {
					if o := <-results; o.c != nil {
						o.c.Close()
					}
				}
				return r.c, nil
			}
			errs = append(errs, r.err)
			if started == 1 {
				started, pending = 2, pending+1
				startH2()
			}
		}
	}
	return nil, errors.Join(errs...)
}

// tcpTransport is a Conn's HTTP/2 connection, or for HTTP/1.1 what dials a
// connection per tunnel.
type tcpTransport struct {
	carrier string
	addr    string
	tls     *tls.Config
	h2      *http2.ClientConn // HTTP/2 only
	nc      net.Conn          // HTTP/2 only: the connection under h2
	ctx     context.Context   // cancelled by close
	cancel  context.CancelFunc
	nextID  atomic.Uint64

	mu      sync.Mutex
	h1conns map[net.Conn]struct{} // HTTP/1.1 tunnels' connections, closed by close
}

// dialTCP connects over HTTP/2 (one TLS connection, now) or makes a Conn
// that opens an HTTP/1.1 connection per tunnel (checking now that the proxy
// answers TLS with HTTP/1.1).
func dialTCP(ctx context.Context, addr string, cfg *Config, carrier string) (*Conn, error) {
	tmpl, log, err := cfg.templateAndLogger()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{}
	if cfg.TLSConfig != nil {
		tlsConf = cfg.TLSConfig.Clone()
	}
	alpn := "h2"
	if carrier == CarrierH1 {
		alpn = "http/1.1"
	}
	tlsConf.NextProtos = []string{alpn}
	t := &tcpTransport{carrier: carrier, addr: addr, tls: tlsConf, h1conns: map[net.Conn]struct{}{}}
	nc, err := t.dialTLS(ctx)
	if err != nil {
		return nil, err
	}
	if carrier == CarrierH2 {
		if t.h2, err = (&http2.Transport{}).NewClientConn(nc); err != nil {
			nc.Close()
			return nil, fmt.Errorf("masqroute client: HTTP/2 to %s: %w", addr, err)
		}
		t.nc = nc
	} else {
		nc.Close() // the proxy speaks HTTP/1.1 there; tunnels dial their own
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	c := &Conn{
		tcp:           t,
		tmpl:          tmpl,
		authority:     addr,
		header:        cfg.Header.Clone(),
		ringSize:      cfg.RingSize,
		log:           log,
		settingsReady: make(chan struct{}),
		// No HTTP/3 SETTINGS over TCP: extended CONNECT is the HTTP/2
		// client's to check (SETTINGS_ENABLE_CONNECT_PROTOCOL), and
		// datagrams go in capsules.
		settings: wire.Settings{ExtendedConnect: true},
	}
	close(c.settingsReady)
	c.router = engine.NewRouter(engine.Options{RingSize: cfg.RingSize, Hold: engine.HoldOptions{Max: 64}, Logger: log})
	return c, nil
}

// dialTLS opens a TLS connection to the proxy with the carrier's ALPN.
func (t *tcpTransport) dialTLS(ctx context.Context) (net.Conn, error) {
	nc, err := (&tls.Dialer{Config: t.tls}).DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("masqroute client: dial %s over TCP: %w", t.addr, err)
	}
	if got := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != t.tls.NextProtos[0] {
		nc.Close()
		return nil, fmt.Errorf("masqroute client: %s does not serve %s on TCP (ALPN %q)", t.addr, t.tls.NextProtos[0], got)
	}
	return nc, nil
}

func (t *tcpTransport) close() {
	t.cancel()
	if t.h2 != nil {
		t.h2.Close()
		t.nc.Close()
	}
	t.mu.Lock()
	for nc := range t.h1conns {
		nc.Close()
	}
	t.mu.Unlock()
}

// roundTrip sends a tunnel request (req.Proto is the protocol) and
// returns its stream once the proxy accepted it, or a *ProxyError.
func (t *tcpTransport) roundTrip(ctx context.Context, req *http.Request) (stream, *http.Response, error) {
	u := *req.URL
	u.Scheme = "https"
	proto := req.Proto
	if t.carrier == CarrierH1 {
		return t.upgrade(ctx, &u, proto, req.Header)
	}
	r := &http.Request{Method: http.MethodConnect, URL: &u, Host: u.Host, Header: req.Header.Clone()}
	r.Header.Set(":protocol", proto)
	return t.h2RoundTrip(ctx, r)
}

// connect sends a classic CONNECT (RFC 9113 §8.5) for a TCP tunnel, over
// HTTP/2 only.
func (t *tcpTransport) connect(ctx context.Context, req *http.Request) (byteStream, uint64, error) {
	if t.carrier != CarrierH2 {
		return nil, 0, fmt.Errorf("masqroute client: CONNECT for TCP needs HTTP/3 or HTTP/2, not %s", t.carrier)
	}
	s, _, err := t.h2RoundTrip(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	return &h2ByteStream{h2Stream: s.(*h2Stream)}, t.nextID.Add(4) - 4, nil
}

// h2RoundTrip sends r on the HTTP/2 connection, with a pipe as its body,
// and returns the stream once the proxy accepted it, or a *ProxyError.
func (t *tcpTransport) h2RoundTrip(ctx context.Context, r *http.Request) (stream, *http.Response, error) {
	// The stream lives as long as the tunnel: its context is the
	// connection's, and ctx only bounds the wait for the response.
	sctx, cancel := context.WithCancel(t.ctx)
	stop := context.AfterFunc(ctx, cancel)
	pr, pw := io.Pipe()
	r = r.WithContext(sctx)
	r.Body = pr
	resp, err := t.h2.RoundTrip(r)
	stopped := stop()
	if err != nil || !stopped {
		cancel()
		pw.Close()
		if err == nil {
			resp.Body.Close()
			err = ctx.Err()
		}
		return nil, nil, fmt.Errorf("masqroute client: HTTP/2 request: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		cancel()
		pw.Close()
		resp.Body.Close()
		return nil, resp, &ProxyError{Status: resp.StatusCode, ProxyStatus: resp.Header.Get("Proxy-Status")}
	}
	return &h2Stream{body: resp.Body, pw: pw, cancel: cancel, laddr: t.nc.LocalAddr()}, resp, nil
}

// An h2Stream is a tunnel's HTTP/2 stream: the request body is what the
// client writes, the response body what it reads.
type h2Stream struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	laddr  net.Addr
}

func (s *h2Stream) Read(b []byte) (int, error)  { return s.body.Read(b) }
func (s *h2Stream) Write(b []byte) (int, error) { return s.pw.Write(b) }

// Close ends the request body (END_STREAM): the tunnel's end (RFC 9298 §3).
func (s *h2Stream) Close() error { return s.pw.Close() }

func (s *h2Stream) CancelRead(quic.StreamErrorCode) { s.body.Close() }

// CancelWrite resets the stream.
func (s *h2Stream) CancelWrite(quic.StreamErrorCode) {
	s.pw.CloseWithError(errStreamCancelled)
	s.cancel()
}

func (s *h2Stream) LocalAddr() net.Addr { return s.laddr }

var errStreamCancelled = errors.New("masqroute client: stream cancelled")

// upgrade opens an HTTP/1.1 tunnel: a TLS connection of its own, a GET
// with Upgrade, and after 101 the connection carries the capsules.
func (t *tcpTransport) upgrade(ctx context.Context, u *url.URL, proto string, h http.Header) (stream, *http.Response, error) {
	nc, err := t.dialTLS(ctx)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	if t.ctx.Err() != nil {
		t.mu.Unlock()
		nc.Close()
		return nil, nil, net.ErrClosed
	}
	t.h1conns[nc] = struct{}{}
	t.mu.Unlock()
	fail := func(resp *http.Response, err error) (stream, *http.Response, error) {
		t.forget(nc)
		return nil, resp, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	r := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: h.Clone(), ProtoMajor: 1, ProtoMinor: 1}
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", proto)
	bw := bufio.NewWriter(nc)
	fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	r.Header.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		stop()
		return fail(nil, fmt.Errorf("masqroute client: HTTP/1.1 request: %w", err))
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, r)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fail(nil, fmt.Errorf("masqroute client: HTTP/1.1 response: %w", err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return fail(resp, &ProxyError{Status: resp.StatusCode, ProxyStatus: resp.Header.Get("Proxy-Status")})
	}
	return &h1Stream{Reader: br, nc: nc, t: t}, resp, nil
}

func (t *tcpTransport) forget(nc net.Conn) {
	t.mu.Lock()
	delete(t.h1conns, nc)
	t.mu.Unlock()
	nc.Close()
}

// An h1Stream is an upgraded HTTP/1.1 connection; the tunnel ends with it.
type h1Stream struct {
	*bufio.Reader // what ReadResponse read ahead comes first
	nc            net.Conn
	t             *tcpTransport
}

func (s *h1Stream) Write(b []byte) (int, error)      { return s.nc.Write(b) }
func (s *h1Stream) Close() error                     { s.t.forget(s.nc); return nil }
func (s *h1Stream) CancelRead(quic.StreamErrorCode)  { s.t.forget(s.nc) }
func (s *h1Stream) CancelWrite(quic.StreamErrorCode) { s.t.forget(s.nc) }
func (s *h1Stream) LocalAddr() net.Addr              { return s.nc.LocalAddr() }

// An h2ByteStream is a CONNECT (TCP) tunnel's HTTP/2 stream. Deadlines
// end it: an HTTP/2 body has no deadline of its own, so when one passes the
// stream is reset and Read and Write fail with os.ErrDeadlineExceeded.
type h2ByteStream struct {
	*h2Stream
	expired atomic.Bool

	mu             sync.Mutex // guards the timers
	rTimer, wTimer *time.Timer
}

func (s *h2ByteStream) Read(b []byte) (int, error) {
	n, err := s.h2Stream.Read(b)
	if err != nil && s.expired.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

func (s *h2ByteStream) Write(b []byte) (int, error) {
	n, err := s.h2Stream.Write(b)
	if err != nil && s.expired.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// CloseWrite ends the request body (END_STREAM).
func (s *h2ByteStream) CloseWrite() error { return s.pw.Close() }

// Close resets the stream unless both sides have ended.
func (s *h2ByteStream) Close() error {
	s.mu.Lock()
	for _, tm := range []*time.Timer{s.rTimer, s.wTimer} {
		if tm != nil {
			tm.Stop()
		}
	}
	s.mu.Unlock()
	s.CancelWrite(0)
	s.CancelRead(0)
	return nil
}

func (s *h2ByteStream) SetReadDeadline(d time.Time) error  { return s.setDeadline(&s.rTimer, d) }
func (s *h2ByteStream) SetWriteDeadline(d time.Time) error { return s.setDeadline(&s.wTimer, d) }

func (s *h2ByteStream) setDeadline(tm **time.Timer, d time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *tm != nil {
		(*tm).Stop()
		*tm = nil
	}
	if d.IsZero() {
		return nil
	}
	*tm = time.AfterFunc(time.Until(d), s.expire)
	return nil
}

// expire ends the stream when a deadline has passed.
func (s *h2ByteStream) expire() {
	s.expired.Store(true) // before the reset: the Read or Write it fails must see it
	s.CancelWrite(0)
	s.CancelRead(0)
}
