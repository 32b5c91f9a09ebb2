package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/pull"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A ProxyError is a proxy's refusal of a tunnel: its status and its
// Proxy-Status header (RFC 9209).
type ProxyError struct {
	Status      int
	ProxyStatus string
}

func (e *ProxyError) Error() string {
	msg := fmt.Sprintf("masqroute client: proxy answered %d %s", e.Status, http.StatusText(e.Status))
	if e.ProxyStatus != "" {
		msg += " (" + e.ProxyStatus + ")"
	}
	return msg
}

// maxDatagram bounds the payload UDPConn.Write accepts: the UDP maximum.
const maxDatagram = 65527

// A UDPConn is one CONNECT-UDP tunnel: a connected UDP socket to its target,
// through the proxy. It implements net.Conn and net.PacketConn (WriteTo
// ignores its address, as on a connected socket). Read and ReadFrom may be
// called by one goroutine at a time; writes are safe from many.
type UDPConn struct {
	c       *Conn
	str     stream
	s       *engine.Session
	target  string
	raddr   net.Addr
	sendBuf sync.Pool // *[]byte, for Write's header + payload

	readMu   sync.Mutex // one reader: the session ring has one consumer
	pending  [][]byte   // popped and not yet returned by Read
	popBuf   [][]byte
	deadline deadlines

	wmu       sync.Mutex // serializes capsule writes on the stream
	closeOnce sync.Once
	closed    atomic.Bool   // Close was called
	peerEnded atomic.Bool   // the proxy ended the stream (FIN) while the connection lived
	capsules  chan struct{} // closed when the capsule reader has ended
}

// DialUDP opens a tunnel to target ("host:port"; host a name or an IP
// literal) through the proxy.
func (c *Conn) DialUDP(ctx context.Context, target string) (*UDPConn, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("masqroute client: target %q: %w", target, err)
	}
	if err := c.waitSettings(ctx); err != nil {
		return nil, err
	}
	raw, err := c.tmpl.Expand(map[string]string{"authority": c.authority, "target_host": host, "target_port": port})
	if err != nil {
		return nil, fmt.Errorf("masqroute client: template: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	var hs *http3.RequestStream // HTTP/3
	var id uint64
	if c.tcp != nil {
		id = c.tcp.nextID.Add(4) - 4 // numbered as QUIC numbers request streams
	} else {
		if hs, err = c.h3.OpenRequestStream(ctx); err != nil {
			return nil, fmt.Errorf("masqroute client: open stream: %w", err)
		}
		id = uint64(hs.StreamID())
	}
	// Register before the request goes out: the proxy may send a reply
	// datagram right behind its 200.
	s, err := c.router.Register(id, nil)
	if err != nil {
		if hs != nil {
			hs.CancelWrite(quic.StreamErrorCode(wire.ErrCodeRequestCancelled))
		}
		return nil, err
	}
	var str stream
	fail := func(err error) (*UDPConn, error) {
		if str != nil {
			str.CancelRead(quic.StreamErrorCode(wire.ErrCodeRequestCancelled))
			str.CancelWrite(quic.StreamErrorCode(wire.ErrCodeRequestCancelled))
		}
		c.router.Unregister(id)
		return nil, err
	}
	req := &http.Request{
		Method: http.MethodConnect,
		Proto:  engine.ProtocolConnectUDP,
		Host:   u.Host,
		URL:    u,
		Header: http.Header{"Capsule-Protocol": {"?1"}},
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	req = req.WithContext(ctx)
	var resp *http.Response
	if c.tcp != nil {
		str, resp, err = c.tcp.roundTrip(ctx, req) // carrier.go
		if err != nil {
			return fail(err)
		}
	} else {
		str = hs
		if err := hs.SendRequestHeader(req); err != nil {
			return fail(fmt.Errorf("masqroute client: send request: %w", err))
		}
		if resp, err = hs.ReadResponse(); err != nil {
			return fail(fmt.Errorf("masqroute client: read response: %w", err))
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fail(&ProxyError{Status: resp.StatusCode, ProxyStatus: resp.Header.Get("Proxy-Status")})
		}
	}
	uc := &UDPConn{
		c:        c,
		str:      str,
		s:        s,
		target:   target,
		raddr:    targetAddr(host, port),
		popBuf:   make([][]byte, 16),
		capsules: make(chan struct{}),
	}
	uc.deadline.init()
	c.wg.Add(1)
	go uc.routineReadCapsules()
	return uc, nil
}

// targetAddr is the tunnel's RemoteAddr: a *net.UDPAddr for an IP literal,
// else a name address.
func targetAddr(host, port string) net.Addr {
	p, _ := strconv.Atoi(port)
	if a, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(p)))
	}
	return nameAddr(net.JoinHostPort(host, port))
}

type nameAddr string

func (nameAddr) Network() string  { return "udp" }
func (a nameAddr) String() string { return string(a) }

// StreamID is the tunnel's request stream.
func (u *UDPConn) StreamID() uint64 { return u.s.StreamID() }

// Read reads the next UDP payload from the target into b. A payload longer
// than b is cut short, as on a UDP socket.
//
// Once the tunnel has ended, Read fails: with io.EOF when the proxy ended
// it (closed its side of the stream, as on an idle timeout), and with an
// error matching net.ErrClosed after Close, or once the connection has
// closed (Conn.Close, the proxy shutting down, a lost connection).
// Datagrams still queued when the tunnel ends are discarded.
func (u *UDPConn) Read(b []byte) (int, error) {
	u.readMu.Lock()
	defer u.readMu.Unlock()
	for {
		if u.closed.Load() {
			return 0, net.ErrClosed
		}
		for len(u.pending) > 0 {
			d := u.pending[0]
			u.pending[0] = nil
			u.pending = u.pending[1:]
			ctxID, payload, err := wire.ParseContextID(d)
			if err != nil || ctxID != 0 {
				continue // RFC 9298 §4: drop unknown context IDs
			}
			return copy(b, payload), nil
		}
		if n := pullOps.Pop(u.s, u.popBuf); n > 0 {
			u.pending = u.popBuf[:n]
			continue
		}
		if err := u.wait(); err != nil {
			return 0, err
		}
	}
}

// pullOps consume a tunnel's pull-mode session (its Router.Register with a
// nil Handler): the tunnel's reader pops datagrams itself, with its own
// deadline, instead of having a session goroutine hand them over.
var pullOps = pull.Get[engine.Session]()

// wait parks until a datagram arrives, the deadline passes or the tunnel
// ends.
func (u *UDPConn) wait() error {
	if !pullOps.Arm(u.s) {
		// Something to pop, or the session has ended (a closed ring is
		// never parked on).
		select {
		case <-u.s.Done():
			return u.endErr()
		default:
			return nil
		}
	}
	defer pullOps.Disarm(u.s)
	select {
	case <-pullOps.Notify(u.s):
		return nil
	case <-u.s.Done():
		// Datagrams queued before the end were discarded with the
		// session; report the end.
		return u.endErr()
	case <-u.deadline.wait():
		return os.ErrDeadlineExceeded
	}
}

// endErr is the error of a read or write on an ended tunnel: io.EOF for a
// read when the proxy ended the stream, else one matching net.ErrClosed
// (with the connection's close reason, if that is what ended it).
func (u *UDPConn) endErr() error {
	if u.peerEnded.Load() && !u.closed.Load() {
		return io.EOF
	}
	return u.closedErr()
}

// closedErr matches net.ErrClosed; it carries the connection's close
// reason when the connection has closed and Close was not called.
func (u *UDPConn) closedErr() error {
	if cause := context.Cause(u.c.Context()); cause != nil && !u.closed.Load() {
		return fmt.Errorf("%w: connection closed: %w", net.ErrClosed, cause)
	}
	return net.ErrClosed
}

// ReadFrom is Read, with the tunnel's target as the address.
func (u *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := u.Read(b)
	return n, u.raddr, err
}

// Write sends b to the target as one UDP datagram. There is no delivery
// guarantee. b must fit in one QUIC datagram of the connection; a larger b
// fails with a *quic.DatagramTooLargeError. On a tunnel that has ended
// (Close, the proxy ended it, the connection closed) Write fails with an
// error matching net.ErrClosed.
func (u *UDPConn) Write(b []byte) (int, error) {
	if len(b) > maxDatagram {
		return 0, errors.New("masqroute client: datagram too large")
	}
	select {
	case <-u.s.Done():
		return 0, u.closedErr()
	default:
	}
	if !u.c.datagrams {
		if err := u.writeCapsule(b); err != nil {
			return 0, u.wrapWriteErr(err)
		}
		return len(b), nil
	}
	bp, _ := u.sendBuf.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	need := wire.MaxDatagramHeaderLen + len(b)
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	buf := (*bp)[:need]
	copy(buf[wire.MaxDatagramHeaderLen:], b)
	err := u.s.SendDatagram(buf, wire.MaxDatagramHeaderLen, 0)
	u.sendBuf.Put(bp)
	if err != nil {
		return 0, u.wrapWriteErr(err)
	}
	return len(b), nil
}

// wrapWriteErr makes a send error that comes from the connection's or the
// tunnel's end match net.ErrClosed; it races with the session's end, which
// Write checks first.
func (u *UDPConn) wrapWriteErr(err error) error {
	if u.c.Context().Err() != nil || u.closed.Load() {
		return fmt.Errorf("%w: %w", net.ErrClosed, err)
	}
	select {
	case <-u.s.Done():
		return fmt.Errorf("%w: %w", net.ErrClosed, err)
	default:
		return err
	}
}

// writeCapsule sends b in a DATAGRAM capsule, for a proxy without datagrams.
func (u *UDPConn) writeCapsule(b []byte) error {
	v := quicvarint.Append(make([]byte, 0, len(b)+1), 0)
	v = append(v, b...)
	u.wmu.Lock()
	defer u.wmu.Unlock()
	_, err := u.str.Write(wire.AppendCapsule(nil, wire.CapsuleDatagram, v))
	return err
}

// WriteTo is Write; addr is ignored, as the tunnel has one target.
func (u *UDPConn) WriteTo(b []byte, _ net.Addr) (int, error) { return u.Write(b) }

// routineReadCapsules reads the proxy's capsules until the stream ends:
// DATAGRAM capsules are dispatched like datagrams; the end of the stream
// ends the tunnel.
func (u *UDPConn) routineReadCapsules() {
	defer u.c.wg.Done()
	defer close(u.capsules)
	id := u.s.StreamID()
	cr := wire.NewCapsuleReader(u.str, wire.DefaultMaxCapsuleValue, func(t uint64) bool { return t == wire.CapsuleDatagram })
	for {
		_, v, err := cr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) && !u.closed.Load() && u.c.Context().Err() == nil { // not Conn.Close's doing
				u.peerEnded.Store(true) // before the Unregister that ends the session
			}
			if errors.Is(err, wire.ErrCapsuleTooLarge) || errors.Is(err, wire.ErrMalformedCapsule) {
				u.str.CancelRead(quic.StreamErrorCode(wire.ErrCodeMessageError))
				u.str.CancelWrite(quic.StreamErrorCode(wire.ErrCodeMessageError))
			}
			u.c.router.Unregister(id)
			return
		}
		u.c.router.Dispatch(id, append([]byte(nil), v...))
	}
}

// Close ends the tunnel: the request stream is closed (RFC 9298 §3), the
// session unregistered. It is idempotent. Reads and writes after Close,
// and a Read blocked in it, fail with net.ErrClosed.
func (u *UDPConn) Close() error {
	u.closeOnce.Do(func() {
		u.closed.Store(true)
		u.wmu.Lock()
		u.str.Close()
		u.wmu.Unlock()
		u.str.CancelRead(quic.StreamErrorCode(wire.ErrCodeNoError))
		u.c.router.Unregister(u.s.StreamID())
		<-u.capsules
	})
	return nil
}

// LocalAddr is the local address of the connection the tunnel runs on.
func (u *UDPConn) LocalAddr() net.Addr {
	if a, ok := u.str.(interface{ LocalAddr() net.Addr }); ok {
		return a.LocalAddr()
	}
	return u.c.qc.LocalAddr()
}

// RemoteAddr is the tunnel's target.
func (u *UDPConn) RemoteAddr() net.Addr { return u.raddr }

// SetDeadline sets the read deadline; writes never block long (a QUIC
// datagram is queued or dropped).
func (u *UDPConn) SetDeadline(t time.Time) error { return u.SetReadDeadline(t) }

// SetReadDeadline makes a blocked or later Read fail with
// os.ErrDeadlineExceeded once t passes; the zero time clears it.
func (u *UDPConn) SetReadDeadline(t time.Time) error {
	u.deadline.set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored.
func (u *UDPConn) SetWriteDeadline(time.Time) error { return nil }

var (
	_ net.Conn       = (*UDPConn)(nil)
	_ net.PacketConn = (*UDPConn)(nil)
)
