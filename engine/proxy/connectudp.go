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

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/udpio"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// The CONNECT-UDP tunnel (RFC 9298). Its pipeline, per tunnel:
//
//	client → target (sequential, the session goroutine):
//	    ring batch → HandleDatagrams → context ID check → udpio.WriteBatch (sendmmsg)
//	target → client (sequential, routineUDPReceive, one goroutine per tunnel):
//	    udpio.ReadBatch (recvmmsg) into pooled buffers with headroom
//	    → header written in front → quic.Conn.SendDatagram (or a DATAGRAM capsule)
//
// Both directions run in parallel with each other and with every other
// tunnel; neither takes a lock per datagram.

// ErrIdleTimeout ends a tunnel that carried nothing for
// Config.IdleTimeout.
var ErrIdleTimeout = errors.New("masqroute: tunnel idle timeout")

// udpReadBatch is the most buffers routineUDPReceive reads into at once.
// It starts with one and doubles the batch while reads fill it, halving it
// again after udpShrinkAfter reads that do not: a busy tunnel reads in
// batches (recvmmsg), an idle one holds a single 2 KiB buffer while it
// waits, not udpReadBatch of them.
const (
	udpReadBatch   = 8
	udpShrinkAfter = 16
)

// udpBuffers are shared by every tunnel's reader.
var udpBuffers udpio.Pool

// udpKind starts CONNECT-UDP tunnels: resolve the target, check the policy
// against the resolved address, connect a UDP socket to that same address.
type udpKind struct{ p *Proxy }

func isUDPKind(k engine.Kind) bool { _, ok := k.(*udpKind); return ok }

func (k *udpKind) Start(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
	req, ok := args.Value.(*Request)
	if !ok || req.udpTarget == nil {
		return nil, errors.New("connect-udp session started without a proxy request")
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
	t := &udpTunnel{
		p:       p,
		s:       s,
		conn:    conn,
		req:     req,
		target:  addr,
		maxSize: p.cfg.MaxDatagramPayload,
		done:    make(chan struct{}),
	}
	t.touch()
	if p.cfg.IdleTimeout > 0 {
		t.idle = time.AfterFunc(p.cfg.IdleTimeout, t.checkIdle)
	}
	p.trackTunnel(&t.c, true)
	go t.routineUDPReceive()
	return t, nil
}

// resolveAllowed resolves t and returns the first address the policy allows,
// or the StatusError to answer with.
func (p *Proxy) resolveAllowed(ctx context.Context, t template.Target) (netip.AddrPort, error) {
	var refusal error
	addr, err := template.Resolve(ctx, p.cfg.Resolver, t, p.cfg.ResolveTimeout, func(a netip.Addr) bool {
		err := p.cfg.Policy.Check(netip.AddrPortFrom(a, t.Port))
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
		if refusal != nil {
			details = refusal.Error()
		}
		return addr, &StatusError{Status: http.StatusForbidden, ProxyError: proxyErrDestIPProhibited,
			Details: details, Err: errors.Join(err, refusal)}
	case errors.Is(err, template.ErrDNSTimeout):
		p.counters.tunnelFailDNS.Add(1)
		return addr, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDNSTimeout,
			Details: "DNS lookup timed out", Err: err}
	default:
		p.counters.tunnelFailDNS.Add(1)
		return addr, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDNSError,
			Details: "DNS lookup failed", Err: err}
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

	c tunnelCounters

	lastActive atomic.Int64 // unix nanoseconds of the last datagram either way
	idle       *time.Timer

	// writes is the session goroutine's scratch batch.
	writes [][]byte

	closeOnce sync.Once
	done      chan struct{} // closed when routineUDPReceive has ended
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
// on the session goroutine.
func (t *udpTunnel) HandleDatagrams(batch [][]byte) {
	w := t.writes[:0]
	for _, d := range batch {
		ctxID, payload, err := wire.ParseContextID(d)
		switch {
		case err != nil:
			t.c.dropMalformed.Add(1)
		case ctxID != 0:
			// RFC 9298 §4: context IDs other than 0 are extensions
			// this proxy did not register.
			t.c.dropUnknownContext.Add(1)
		case len(payload) > t.maxSize:
			t.c.dropOversize.Add(1)
		default:
			w = append(w, payload)
		}
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
			// was not sent. Count the report and retry the rest once.
			t.c.targetUnreachable.Add(1)
			continue
		}
		t.c.dropSendError.Add(uint64(len(w)))
		break
	}
	clear(t.writes)
}

// routineUDPReceive reads the target's replies and sends them to the client.
func (t *udpTunnel) routineUDPReceive() {
	defer close(t.done)
	log := t.p.log
	log.Debug("masqroute: tunnel receive started", "stream", t.s.StreamID(), "target", t.target)
	defer log.Debug("masqroute: tunnel receive stopped", "stream", t.s.StreamID())

	var (
		bufs  [udpReadBatch]*udpio.Buffer
		views [udpReadBatch][]byte
		sizes [udpReadBatch]int
		k     = 1 // buffers in use: bufs[:k]
		slack int // reads in a row that did not fill the batch
	)
	bufs[0] = udpBuffers.Get()
	views[0] = bufs[0].Payload()
	defer func() {
		for _, b := range bufs[:k] {
			udpBuffers.Put(b)
		}
	}()
	for {
		n, truncated, err := t.conn.ReadBatch(views[:k], sizes[:k])
		t.c.dropOversize.Add(uint64(truncated))
		for i := range n {
			t.sendToClient(bufs[i], sizes[i])
		}
		switch {
		case n == k && k < udpReadBatch: // busy: read more at once
			for i := k; i < 2*k; i++ {
				bufs[i] = udpBuffers.Get()
				views[i] = bufs[i].Payload()
			}
			k, slack = 2*k, 0
		case n < k/2:
			if slack++; slack >= udpShrinkAfter { // quiet again: give buffers back
				for i := k / 2; i < k; i++ {
					udpBuffers.Put(bufs[i])
					bufs[i], views[i] = nil, nil
				}
				k, slack = k/2, 0
			}
		default:
			slack = 0
		}
		if n > 0 {
			t.touch()
		}
		if err != nil {
			if errors.Is(err, udpio.ErrTargetUnreachable) || errors.Is(err, udpio.ErrTooLarge) {
				t.c.targetUnreachable.Add(1)
				continue
			}
			return // closed
		}
	}
}

// sendToClient sends one reply of n bytes, in b's payload area, to the
// client: as a QUIC datagram, or as a DATAGRAM capsule on the request stream
// when the connection has no datagrams.
func (t *udpTunnel) sendToClient(b *udpio.Buffer, n int) {
	if n > t.maxSize {
		t.c.dropReturnOversize.Add(1)
		return
	}
	var err error
	if t.req.datagrams {
		err = t.s.SendDatagram(b.Frame(udpio.Headroom, n), udpio.Headroom, 0)
	} else {
		err = t.req.writeDatagramCapsule(0, b.Payload()[:n])
	}
	if err != nil {
		if _, tooLarge := errors.AsType[*quic.DatagramTooLargeError](err); tooLarge {
			t.c.dropReturnOversize.Add(1)
		} else {
			t.c.dropReturnSendError.Add(1)
		}
		return
	}
	t.c.toClient.Add(1)
	t.c.toClientBytes.Add(uint64(n))
}

// Close ends the tunnel: the socket is closed, which ends
// routineUDPReceive, and Close waits for it so that no goroutine outlives
// the session and nothing writes to the request stream afterwards.
func (t *udpTunnel) Close(reason error) {
	t.closeOnce.Do(func() {
		if t.idle != nil {
			t.idle.Stop()
		}
		t.conn.Close()
		<-t.done
		t.p.trackTunnel(&t.c, false)
		t.p.log.Debug("masqroute: tunnel closed", "stream", t.s.StreamID(), "target", t.target, "reason", reason)
	})
}

func (t *udpTunnel) String() string {
	return fmt.Sprintf("udp tunnel stream %d → %s", t.s.StreamID(), t.target)
}
