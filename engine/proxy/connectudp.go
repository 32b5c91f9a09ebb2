package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/udpio"
)

// The CONNECT-UDP tunnel (RFC 9298). Its pipeline, per tunnel:
//
//	client → target (an executor worker, one batch per turn):
//	    ring batch → HandleDatagrams → context ID check
//	    → udpio.WriteBatch (GSO runs of same-size datagrams, sendmmsg for the rest)
//	target → client (the proxy's pollers: one epoll wake serves many sockets):
//	    edge → onReadable → udpio.TryReadBatch (recvmmsg) into pooled buffers
//	    with headroom → header written in front → the connection's reply ring
//	    → its sender: quic.Conn.SendDatagram (or a DATAGRAM capsule)
//
// No goroutine belongs to a tunnel (off Linux, where there is no poller, a
// receive goroutine per tunnel reads instead). Neither direction takes a
// lock per datagram, and neither waits on the client: only the connection's
// sender does (sender.go).

// ErrIdleTimeout ends a tunnel that carried nothing for
// Config.IdleTimeout.
var ErrIdleTimeout = errors.New("masqroute: tunnel idle timeout")

// udpReadBatch is the most buffers one read of a target socket fills; see
// readReplies for how the batch adapts.
const (
	udpReadBatch   = 8
	udpShrinkAfter = 16
)

// udpBuffers are shared by every tunnel's reader.
var udpBuffers udpio.Pool

// udpKind starts CONNECT-UDP tunnels: resolve the target, check the policy
// against the resolved address, connect a UDP socket to that same address.
type udpKind struct{ p *Proxy }

func (k *udpKind) Start(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
	if req, ok := args.Value.(*Request); ok && req.udpBind {
		return k.p.startBind(ctx, s, req) // udpbind.go
	}
	req, err := startRequest(args, engine.ProtocolConnectUDP, func(r *Request) bool { return r.udpTarget != nil })
	if err != nil {
		return nil, err
	}
	p := k.p
	addr, err := p.resolveAllowed(ctx, *req.udpTarget)
	if err != nil {
		return nil, err
	}
	conn, err := udpio.Dial(ctx, addr)
	if err != nil {
		p.counters.tunnelFailDial.Add(1)
		return nil, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDestUnavailable,
			Details: "cannot reach target", Err: err}
	}
	t, err := newUDPTunnel(p, s, req, conn, req.conn.sender, p.nextPoller())
	if err != nil {
		p.counters.tunnelFailDial.Add(1)
		return nil, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDestUnavailable,
			Details: "cannot watch the target socket", Err: err}
	}
	if p.cfg.IdleTimeout > 0 {
		t.idle = time.AfterFunc(p.cfg.IdleTimeout, t.checkIdle)
	}
	return t, nil
}

// newUDPTunnel makes the tunnel of session s over the connected socket conn
// and starts reading it: registered with poller, or with a goroutine of its
// own when poller is nil. Replies go through snd. On error conn is closed.
func newUDPTunnel(p *Proxy, s *engine.Session, req *Request, conn *udpio.Conn, snd *sender, poller *udpio.Poller) (*udpTunnel, error) {
	t := &udpTunnel{
		p:       p,
		s:       s,
		conn:    conn,
		req:     req,
		target:  conn.RemoteAddr(),
		maxSize: p.cfg.MaxDatagramPayload,
		snd:     snd,
		poller:  poller,
		ovh:     udpOverhead(conn.RemoteAddr().Addr().Unmap().Is4()),
		readK:   1,
		done:    make(chan struct{}),
	}
	t.rate = newRateLimits(p.cfg.RateTunnelDatagrams, p.cfg.RateTunnelBytes, p.cfg.RateBurst)
	if req.conn != nil {
		t.amp = req.conn.amp
		t.connRate = req.conn.rate
	}
	t.touch()
	t.openBook(p)
	if poller == nil {
		go t.routineUDPReceive()
		return t, nil
	}
	var err error
	if t.reg, err = poller.Add(conn, t.onReadable); err != nil {
		conn.Close()
		t.fold()
		return nil, err
	}
	return t, nil
}

// resolveAllowed resolves t and returns the first address the policy allows,
// or the StatusError to answer with.
func (p *Proxy) resolveAllowed(ctx context.Context, t template.Target) (netip.AddrPort, error) {
	var refusal error
	addr, err := template.Resolve(ctx, p.cfg.Resolver, t, p.cfg.ResolveTimeout, func(a netip.Addr) bool {
		err := p.cfg.Policy.Check(netip.AddrPortFrom(a, t.Port))
		if err == nil {
			err = p.checkHost(netip.AddrPortFrom(a, t.Port))
		}
		if err != nil && refusal == nil {
			refusal = err
		}
		return err == nil
	})
	switch {
	case err == nil:
		return addr, nil
	case errors.Is(err, template.ErrNoAllowedAddress):
		p.counters.tunnelRefusedPolicy.Add(1)
		details := "target refused by policy"
		if se, ok := errors.AsType[*StatusError](refusal); ok {
			details = se.Details
		} else if refusal != nil {
			details = refusal.Error()
		}
		return addr, &StatusError{Status: http.StatusForbidden, ProxyError: proxyErrDestIPProhibited,
			Details: details, Err: errors.Join(err, refusal)}
	default:
		return addr, p.dnsRefusal(err)
	}
}

// udpTunnel is the Handler of one CONNECT-UDP session.
type udpTunnel struct {
	p       *Proxy
	s       *engine.Session
	conn    *udpio.Conn
	req     *Request
	target  netip.AddrPort
	maxSize int

	replyBook // its counters, and its replies with the sender

	lastActive atomic.Int64 // unix nanoseconds of the last datagram either way
	idle       *time.Timer

	// writes is the scratch batch of HandleDatagrams.
	writes [][]byte
	amp    *ampBudget // the connection's bytes toward targets; nil: no bound
	// rate and connRate: the tunnel's and the connection's rate limits
	// toward targets (ratelimit.go); nil: none.
	rate, connRate *rateLimits
	ovh            int64 // IP + UDP header bytes of one datagram to target

	// The read side (readReplies), owned by the socket's reader.
	snd       *sender             // the connection's reply sender
	poller    *udpio.Poller       // nil: a receive goroutine reads instead
	reg       *udpio.Registration // the socket's registration with poller
	readK     int                 // buffers per read, 1 to udpReadBatch
	readSlack int                 // reads in a row that did not fill half the batch

	closeOnce sync.Once
	done      chan struct{} // closed when routineUDPReceive has ended (no poller)
}

func (t *udpTunnel) touch() { t.lastActive.Store(time.Now().UnixNano()) }

// checkIdle runs on the idle timer: end the tunnel, or look again later.
func (t *udpTunnel) checkIdle() {
	left := time.Duration(t.lastActive.Load()+int64(t.p.cfg.IdleTimeout)) - time.Duration(time.Now().UnixNano())
	if left > 0 {
		t.idle.Reset(left)
		return
	}
	t.p.counters.tunnelIdleClosed.Add(1)
	t.s.CloseWithError(ErrIdleTimeout)
}

// HandleDatagrams writes a batch of client datagrams to the target. It runs
// on an executor worker and does not block: the socket is non-blocking, and
// a datagram the kernel cannot take is dropped and counted.
func (t *udpTunnel) HandleDatagrams(batch [][]byte) {
	w := t.writes[:0]
	var cost int64
	for _, d := range batch {
		payload, ok := t.c.contextZero(d) // RFC 9298 §4: other context IDs are unregistered extensions
		switch {
		case !ok:
		case len(payload) > t.maxSize:
			t.c.dropOversize.Add(1)
		default:
			w = append(w, payload)
			cost += int64(len(payload)) + t.ovh
		}
	}
	if n := len(w); n > 0 {
		var size int64
		if w, size = limitBatch(w, t.rate, t.connRate, &t.c.dropRateLimited); len(w) < n {
			cost = size + int64(len(w))*t.ovh
		}
	}
	if len(w) > 0 && !t.amp.take(cost) {
		w = t.trimToBudget(w)
	}
	t.writes = w
	if len(w) == 0 {
		return
	}
	t.touch()
	for len(w) > 0 {
		n, tooLarge, err := t.conn.WriteBatch(w)
		t.c.dropOversize.Add(uint64(tooLarge))
		sent := n - tooLarge
		t.c.toTarget.Add(uint64(sent))
		for _, b := range w[:n] {
			t.c.toTargetBytes.Add(uint64(len(b)))
		}
		w = w[n:]
		if err == nil {
			break
		}
		if errors.Is(err, udpio.ErrTargetUnreachable) {
			// The ICMP error belongs to an earlier datagram; this one
			// was not sent. Count the report and send the rest: the
			// kernel keeps one pending error per socket, and reporting
			// it cleared it.
			t.c.targetUnreachable.Add(1)
			continue
		}
		t.c.dropSendError.Add(uint64(len(w)))
		break
	}
	clear(t.writes)
}

// trimToBudget keeps the datagrams of w the connection's amplification
// budget still covers, in order, and drops and counts the rest. It runs
// only when the whole batch did not fit.
func (t *udpTunnel) trimToBudget(w [][]byte) [][]byte {
	for i, d := range w {
		if !t.amp.take(int64(len(d)) + t.ovh) {
			t.c.dropAmplification.Add(uint64(len(w) - i))
			clear(w[i:])
			return w[:i]
		}
	}
	return w
}

// onReadable is the tunnel's Poller handler: the target socket became
// readable (edge-triggered). It reads one batch and reports whether the
// batch came back full, so that the poller calls it again in its next round;
// a short read has emptied the socket, and a later datagram raises a new
// edge. It runs on the poller's goroutine and never blocks.
func (t *udpTunnel) onReadable() (more bool) {
	full, err := t.readReplies(false)
	if err != nil {
		if errors.Is(err, udpio.ErrTargetUnreachable) || errors.Is(err, udpio.ErrTooLarge) {
			t.c.targetUnreachable.Add(1)
			return true // datagrams may be queued behind the error
		}
		return false // closed: Close removes the registration
	}
	return full
}

// routineUDPReceive reads the target's replies where no Poller is available
// (not Linux): one goroutine per tunnel, blocked in ReadBatch.
func (t *udpTunnel) routineUDPReceive() {
	defer close(t.done)
	for {
		_, err := t.readReplies(true)
		if err != nil {
			if errors.Is(err, udpio.ErrTargetUnreachable) || errors.Is(err, udpio.ErrTooLarge) {
				t.c.targetUnreachable.Add(1)
				continue
			}
			return // closed
		}
	}
}

// readReplies reads one batch of the target's replies into pooled buffers
// and queues them on the connection's sender; wait says whether to wait for
// the first datagram (ReadBatch) or not (TryReadBatch). It reports whether
// the batch came back full. The batch size adapts: it starts at one buffer
// and doubles while reads fill it, and halves again after udpShrinkAfter
// reads that do not, so a busy tunnel reads with recvmmsg in batches and a
// quiet one takes a single buffer per read. Between reads the tunnel holds
// no buffer at all.
//
// Only the socket's reader calls it: the poller's handler calls for one
// registration never overlap, and the fallback goroutine is alone.
func (t *udpTunnel) readReplies(wait bool) (full bool, err error) {
	var (
		bufs  [udpReadBatch]*udpio.Buffer
		views [udpReadBatch][]byte
		sizes [udpReadBatch]int
		n     int
		trunc int
	)
	k := t.readK
	for i := range k {
		bufs[i] = udpBuffers.Get()
		views[i] = bufs[i].Payload()
	}
	if wait {
		n, trunc, err = t.conn.ReadBatch(views[:k], sizes[:k])
	} else {
		n, trunc, err = t.conn.TryReadBatch(views[:k], sizes[:k])
	}
	t.c.dropOversize.Add(uint64(trunc))
	for i := range n {
		t.queueReply(bufs[i], sizes[i])
		bufs[i] = nil
	}
	for _, b := range bufs[:k] {
		if b != nil {
			udpBuffers.Put(b)
		}
	}
	full = n+trunc == k
	switch {
	case full && k < udpReadBatch: // busy: read more at once
		t.readK, t.readSlack = 2*k, 0
	case n < k/2:
		if t.readSlack++; t.readSlack >= udpShrinkAfter { // quiet again
			t.readK, t.readSlack = k/2, 0
		}
	default:
		t.readSlack = 0
	}
	if n > 0 {
		t.touch()
	}
	return full, err
}

// queueReply frames the n-byte reply in b and queues it on the connection's
// sender, which owns b from then on (it comes back through replied). A
// reply that cannot be queued is dropped, counted, and b freed.
func (t *udpTunnel) queueReply(b *udpio.Buffer, n int) {
	if n > t.maxSize {
		t.c.dropReturnOversize.Add(1)
		udpBuffers.Put(b)
		return
	}
	if !t.hold() { // never: Close stops the reader before it closes the book
		udpBuffers.Put(b)
		return
	}
	if !t.send(t.snd, newReply(t, b, n, t.s.StreamID()), &t.c.dropReturnQueueFull) {
		udpBuffers.Put(b)
	}
}

func (t *udpTunnel) request() *Request { return t.req }

// replied counts the outcome of one reply and frees its buffer; it runs on
// the sender's goroutine. The last reply of a closed tunnel folds its
// counters into the proxy's totals.
func (t *udpTunnel) replied(r *reply, err error) {
	t.countReply(r, err)
	udpBuffers.Put(r.buf)
	t.settled()
}

// Close ends the tunnel. It unregisters the socket from its poller first
// (which waits for a handler call in progress, so no read or queueing
// happens afterwards), then closes it; without a poller it closes the
// socket and waits for the receive goroutine. Replies already queued are
// still sent (or dropped, if the request has ended) by the sender, which
// folds the counters after the last one.
func (t *udpTunnel) Close(reason error) {
	t.closeOnce.Do(func() {
		if t.idle != nil {
			t.idle.Stop()
		}
		if t.reg != nil {
			t.poller.Remove(t.reg)
			t.conn.Close()
		} else {
			t.conn.Close()
			<-t.done
		}
		t.closeBook()
		t.p.log.Debug("masqroute: tunnel closed", "stream", t.s.StreamID(), "target", t.target, "reason", reason)
	})
}

func (t *udpTunnel) String() string {
	return fmt.Sprintf("udp tunnel stream %d → %s", t.s.StreamID(), t.target)
}
