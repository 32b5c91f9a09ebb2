package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/udpio"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Connect-UDP-Bind (draft-ietf-masque-connect-udp-listen, -10 onward
// codepoints): a CONNECT-UDP request with "Connect-UDP-Bind: ?1" and the
// target "*" "*" gets an unconnected UDP socket of its own, and the client
// talks to any peer through it.
//
//	client → peer (an executor worker, one batch per turn):
//	    context ID → the uncompressed context: IP version, address, port
//	    in front of the payload; a compressed context: its peer
//	    → per datagram: the target policy and the own-host check on the
//	    peer, the rate limits and the amplification budget → WriteTo
//	peer → client (the tunnel's receive goroutine):
//	    ReadFrom into a pooled buffer, after room for the address → the
//	    peer's compressed context if it has one, else the uncompressed
//	    context with the address written in front, else dropped (the
//	    firewall: the client closed the uncompressed context) → the
//	    connection's sender, as CONNECT-UDP replies go
//
// Contexts are the client's (even IDs, COMPRESSION_ASSIGN answered with
// COMPRESSION_ACK, or COMPRESSION_CLOSE when refused); this proxy opens
// none of its own, which the draft allows. Context ID 0 is forbidden with
// a "*" target: a datagram on it aborts the stream. A closed ID is never
// used again; datagrams on it are dropped.
//
// The socket is read by a goroutine per tunnel, not by the proxy's pollers:
// udpio's Conn is a connected socket and its batch reads return no source
// addresses. Moving bound sockets onto the pollers needs a recvmmsg that
// returns them (left for later; see docs/protocol-tcp-bind.md).

// bindPrefix is the room a bound tunnel's receive buffer keeps in front of
// the payload for the uncompressed context's IP version, address and port.
const bindPrefix = wire.MaxAddrPortLen

// maxBindContexts bounds the contexts a client may open over a tunnel's
// life (open and closed: closed IDs are remembered so they are never
// reused). An ASSIGN beyond it is answered with COMPRESSION_CLOSE.
const maxBindContexts = 4096

// bindCounters are the proxy's Connect-UDP-Bind totals. The datagrams and
// bytes themselves, and the rate, amplification and return-path drops,
// count in the tunnels' counters like CONNECT-UDP's (Stats.ToTarget...).
type bindCounters struct {
	opened         atomic.Uint64
	live           atomic.Int64
	assignAccepted atomic.Uint64
	assignRejected atomic.Uint64
	closes         atomic.Uint64 // COMPRESSION_CLOSE from clients
	dropPolicy     atomic.Uint64 // client datagrams to a peer the policy refuses
	dropNoContext  atomic.Uint64 // client datagrams on an unknown or closed context
	dropFirewall   atomic.Uint64 // peer datagrams with no context to carry them
}

// BindStats are the Connect-UDP-Bind counters; see Stats.Bind.
type BindStats struct {
	Opened         uint64 // bound tunnels started (sockets opened)
	Live           int64  // bound tunnels now
	AssignAccepted uint64 // COMPRESSION_ASSIGN answered with ACK
	AssignRejected uint64 // COMPRESSION_ASSIGN answered with CLOSE
	Closes         uint64 // COMPRESSION_CLOSE from clients
	DropPolicy     uint64 // client datagrams to peers the policy refuses
	DropNoContext  uint64 // client datagrams on unknown or closed contexts
	DropFirewall   uint64 // peer datagrams dropped: no compressed context, uncompressed context closed
}

func (c *bindCounters) snapshot() BindStats {
	return BindStats{
		Opened:         c.opened.Load(),
		Live:           c.live.Load(),
		AssignAccepted: c.assignAccepted.Load(),
		AssignRejected: c.assignRejected.Load(),
		Closes:         c.closes.Load(),
		DropPolicy:     c.dropPolicy.Load(),
		DropNoContext:  c.dropNoContext.Load(),
		DropFirewall:   c.dropFirewall.Load(),
	}
}

// matchBind decides a CONNECT-UDP request that asked for Connect-UDP-Bind:
// "*" for both host and port binds (no fallback); real values fall back
// to plain CONNECT-UDP (the answer then carries no Connect-UDP-Bind);
// exactly one "*" is a bad request. It reports whether the request binds.
func matchBind(r *http.Request, host, port string) (bool, error) {
	if strings.TrimSpace(r.Header.Get("Connect-UDP-Bind")) != "?1" {
		return false, nil
	}
	switch {
	case host == "*" && port == "*":
		return true, nil
	case host == "*" || port == "*":
		return false, &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
			Details: "Connect-UDP-Bind needs both target_host and target_port to be *, or neither"}
	}
	return false, nil
}

// startBind opens the bound socket of a Connect-UDP-Bind request, on the
// address the client reached the proxy at, and sets the response fields.
func (p *Proxy) startBind(ctx context.Context, s *engine.Session, req *Request) (engine.Handler, error) {
	local := netip.IPv4Unspecified()
	if req.conn != nil {
		la, ok1 := req.conn.qc.LocalAddr().(*net.UDPAddr)
		ra, ok2 := req.conn.qc.RemoteAddr().(*net.UDPAddr)
		if ok1 && ok2 {
			local = bindLocalAddr(la.AddrPort().Addr(), ra.AddrPort())
		}
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(local, 0).String())
	if err != nil {
		p.counters.tunnelFailDial.Add(1)
		return nil, &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDestUnavailable,
			Details: "cannot open a bound socket", Err: err}
	}
	var snd *sender
	if req.conn != nil {
		snd = req.conn.sender
	}
	t := newBindTunnel(p, s, req, pc.(*net.UDPConn), snd)
	h := req.w.Header()
	h.Set("Connect-UDP-Bind", "?1")
	h.Set("Proxy-Public-Address", `"`+t.public.String()+`"`)
	return t, nil
}

// newBindTunnel makes the tunnel of session s over the unconnected socket
// conn and starts reading it; replies go through snd.
func newBindTunnel(p *Proxy, s *engine.Session, req *Request, conn *net.UDPConn, snd *sender) *bindTunnel {
	t := &bindTunnel{
		p:       p,
		s:       s,
		req:     req,
		conn:    conn,
		public:  conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		maxSize: p.cfg.MaxDatagramPayload,
		snd:     snd,
		ctxs:    make(map[uint64]bindContext),
		byPeer:  make(map[netip.AddrPort]uint64),
		done:    make(chan struct{}),
	}
	if req.conn != nil {
		t.amp, t.connRate = req.conn.amp, req.conn.rate
	}
	t.rate = newRateLimits(p.cfg.RateTunnelDatagrams, p.cfg.RateTunnelBytes, p.cfg.RateBurst)
	t.openBook(p)
	p.bind.opened.Add(1)
	p.bind.live.Add(1)
	go t.routineBindReceive()
	return t
}

// bindLocalAddr is the address a bound socket takes: the one the client's
// connection arrived at; for a listener on a wildcard address, the source
// address the kernel routes toward the client from (a connected UDP socket
// that sends nothing tells), so that Proxy-Public-Address names a real
// address. It falls back to the wildcard.
func bindLocalAddr(local netip.Addr, client netip.AddrPort) netip.Addr {
	local = local.Unmap()
	if !local.IsUnspecified() {
		return local
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(client))
	if err != nil {
		return local
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// bindContext is one open context of the client's.
type bindContext struct {
	peer netip.AddrPort // invalid: the uncompressed context
}

// bindTunnel is the Handler of one Connect-UDP-Bind session.
type bindTunnel struct {
	p       *Proxy
	s       *engine.Session
	req     *Request
	conn    *net.UDPConn
	public  netip.AddrPort
	maxSize int

	replyBook // its counters, and its replies with the sender
	snd       *sender
	amp       *ampBudget
	rate      *rateLimits
	connRate  *rateLimits

	mu       sync.RWMutex // guards the contexts below
	ctxs     map[uint64]bindContext
	byPeer   map[netip.AddrPort]uint64 // compressed contexts by peer
	unc      uint64                    // the uncompressed context's ID, when hasUnc
	hasUnc   bool
	retired  map[uint64]struct{} // closed IDs: never used again
	assigned int                 // contexts ever opened, for maxBindContexts

	one       [1][]byte // HandleDatagrams' batch of one for limitBatch
	closeOnce sync.Once
	done      chan struct{} // closed when routineBindReceive has ended
}

func (t *bindTunnel) request() *Request { return t.req }

func (t *bindTunnel) replied(r *reply, err error) {
	t.countReply(r, err)
	udpBuffers.Put(r.buf)
	t.settled()
}

// Capsules are the capsule types the request goroutine hands HandleCapsule.
func (t *bindTunnel) Capsules() []uint64 {
	return []uint64{wire.CapsuleCompressionAssign, wire.CapsuleCompressionAck, wire.CapsuleCompressionClose}
}

// HandleCapsule runs on the request goroutine. A malformed value, an odd
// (proxy-side) ID in ASSIGN, or a reused ID aborts the stream.
func (t *bindTunnel) HandleCapsule(typ uint64, value []byte) error {
	switch typ {
	case wire.CapsuleCompressionAssign:
		a, err := wire.ParseCompressionAssign(value)
		if err != nil {
			return err
		}
		return t.assign(a)
	case wire.CapsuleCompressionAck:
		// This proxy assigns no contexts, so there is nothing to ack.
		_, err := wire.ParseCompressionID(value)
		return err
	case wire.CapsuleCompressionClose:
		id, err := wire.ParseCompressionID(value)
		if err != nil {
			return err
		}
		t.closeContext(id)
		return nil
	}
	return nil
}

// assign opens the client's context a, or refuses it with CLOSE: a second
// uncompressed context, a peer that already has one, a peer the policy
// refuses, or too many contexts.
func (t *bindTunnel) assign(a wire.CompressionAssign) error {
	if a.ContextID == 0 || a.ContextID%2 == 1 {
		return fmt.Errorf("COMPRESSION_ASSIGN with context ID %d: not a client ID", a.ContextID)
	}
	peer := netip.AddrPortFrom(a.Addr.Addr().Unmap(), a.Addr.Port())
	ok := a.Uncompressed() || t.allowed(peer)
	t.mu.Lock()
	_, open := t.ctxs[a.ContextID]
	_, retired := t.retired[a.ContextID]
	if open || retired {
		t.mu.Unlock()
		return fmt.Errorf("COMPRESSION_ASSIGN reuses context ID %d", a.ContextID)
	}
	if a.Uncompressed() {
		ok = ok && !t.hasUnc
	} else {
		_, taken := t.byPeer[peer]
		ok = ok && !taken
	}
	ok = ok && t.assigned < maxBindContexts
	if ok {
		t.assigned++
		if a.Uncompressed() {
			t.unc, t.hasUnc = a.ContextID, true
			t.ctxs[a.ContextID] = bindContext{}
		} else {
			t.ctxs[a.ContextID] = bindContext{peer: peer}
			t.byPeer[peer] = a.ContextID
		}
	} else {
		t.retireLocked(a.ContextID)
	}
	t.mu.Unlock()
	if ok {
		t.p.bind.assignAccepted.Add(1)
		return t.req.WriteCapsule(wire.CapsuleCompressionAck, wire.AppendCompressionID(nil, a.ContextID))
	}
	t.p.bind.assignRejected.Add(1)
	return t.req.WriteCapsule(wire.CapsuleCompressionClose, wire.AppendCompressionID(nil, a.ContextID))
}

// closeContext retires the client's context id. Closing the uncompressed
// context turns on the firewall: peers without a compressed context can no
// longer reach the client.
func (t *bindTunnel) closeContext(id uint64) {
	t.p.bind.closes.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.ctxs[id]
	if !ok {
		return
	}
	delete(t.ctxs, id)
	if c.peer.IsValid() {
		delete(t.byPeer, c.peer)
	} else {
		t.hasUnc = false
	}
	t.retireLocked(id)
}

func (t *bindTunnel) retireLocked(id uint64) {
	if t.retired == nil {
		t.retired = make(map[uint64]struct{})
	}
	t.retired[id] = struct{}{}
}

// allowed applies the target policy and the own-host check to a peer.
func (t *bindTunnel) allowed(peer netip.AddrPort) bool {
	return t.p.cfg.Policy.Check(peer) == nil && t.p.checkHost(peer) == nil
}

// HandleDatagrams sends a batch of the client's datagrams to their peers.
// It runs on an executor worker and does not block.
func (t *bindTunnel) HandleDatagrams(batch [][]byte) {
	t.mu.RLock()
	for _, d := range batch {
		id, payload, err := wire.ParseContextID(d)
		if err != nil {
			t.c.dropMalformed.Add(1)
			continue
		}
		if id == 0 {
			// Forbidden with a "*" target: abort the stream, which
			// ends the tunnel through the capsule reader.
			t.c.dropMalformed.Add(1)
			t.req.abort(wire.ErrCodeMessageError)
			continue
		}
		c, ok := t.ctxs[id]
		if !ok {
			t.p.bind.dropNoContext.Add(1)
			continue
		}
		peer := c.peer
		if !peer.IsValid() {
			if peer, payload, err = wire.ParseUncompressed(payload); err != nil {
				t.c.dropMalformed.Add(1)
				continue
			}
			peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		}
		t.sendTo(peer, payload)
	}
	t.mu.RUnlock()
}

// sendTo checks one datagram against the policy and the limits and writes
// it to peer.
func (t *bindTunnel) sendTo(peer netip.AddrPort, payload []byte) {
	if len(payload) > t.maxSize {
		t.c.dropOversize.Add(1)
		return
	}
	if !t.allowed(peer) {
		t.p.bind.dropPolicy.Add(1)
		return
	}
	t.one[0] = payload
	w, _ := limitBatch(t.one[:], t.rate, t.connRate, &t.c.dropRateLimited)
	t.one[0] = nil
	if len(w) == 0 {
		return
	}
	if !t.amp.take(int64(len(payload)) + udpOverhead(peer.Addr().Is4())) {
		t.c.dropAmplification.Add(1)
		return
	}
	if _, err := t.conn.WriteToUDPAddrPort(payload, peer); err != nil {
		t.c.dropSendError.Add(1)
		return
	}
	t.c.toTarget.Add(1)
	t.c.toTargetBytes.Add(uint64(len(payload)))
}

// routineBindReceive reads the peers' datagrams until the socket closes.
func (t *bindTunnel) routineBindReceive() {
	defer close(t.done)
	for {
		b := udpBuffers.Get()
		area := b.Payload()
		n, peer, err := t.conn.ReadFromUDPAddrPort(area[bindPrefix:])
		if err != nil {
			udpBuffers.Put(b)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.c.targetUnreachable.Add(1)
			continue
		}
		t.queueFromPeer(b, n, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()))
	}
}

// queueFromPeer frames the n-byte datagram from peer in b for the client,
// on the peer's context, and queues it; or drops it and frees b.
func (t *bindTunnel) queueFromPeer(b *udpio.Buffer, n int, peer netip.AddrPort) {
	if n > t.maxSize {
		t.c.dropReturnOversize.Add(1)
		udpBuffers.Put(b)
		return
	}
	t.mu.RLock()
	id, compressed := t.byPeer[peer]
	unc, hasUnc := t.unc, t.hasUnc
	t.mu.RUnlock()
	full := b.Frame(udpio.Headroom, bindPrefix+n)
	off := udpio.Headroom + bindPrefix
	switch {
	case compressed:
	case hasUnc:
		l := wire.AddrPortLen(peer)
		off -= l
		wire.PutAddrPort(full[off:off+l], peer)
		id = unc
	default:
		t.p.bind.dropFirewall.Add(1)
		udpBuffers.Put(b)
		return
	}
	if !t.hold() {
		udpBuffers.Put(b)
		return
	}
	r := frameReply(t, full, off, t.s.StreamID(), id)
	r.buf = b
	if !t.send(t.snd, r, &t.c.dropReturnQueueFull) {
		udpBuffers.Put(b)
	}
}

// Close ends the tunnel: the socket closes, the receive goroutine ends,
// then the counters close (replies still queued are sent or dropped by
// the sender, which folds them after the last).
func (t *bindTunnel) Close(reason error) {
	t.closeOnce.Do(func() {
		t.conn.Close()
		<-t.done
		t.closeBook()
		t.p.bind.live.Add(-1)
		t.p.log.Debug("masqroute: bound tunnel closed", "stream", t.s.StreamID(), "public", t.public, "reason", reason)
	})
}

func (t *bindTunnel) String() string {
	return fmt.Sprintf("udp bind tunnel stream %d on %s", t.s.StreamID(), t.public)
}
