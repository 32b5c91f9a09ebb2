package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Errors that end a CONNECT-IP tunnel.
var (
	// ErrTunnelMTU: the connection cannot carry a 1280-byte IP packet in
	// a datagram (RFC 9484 §10.1), so the tunnel is aborted.
	ErrTunnelMTU = errors.New("masqroute: connection cannot carry 1280-byte packets")
	// ErrBadIPCapsule: the client sent a malformed CONNECT-IP capsule.
	ErrBadIPCapsule = errors.New("masqroute: malformed CONNECT-IP capsule")
)

// minTunnelMTU is the IPv6 minimum link MTU every CONNECT-IP tunnel must
// carry (RFC 9484 §10.1, RFC 8200 §5).
const minTunnelMTU = 1280

// mtuProbeContextID is the context ID of the padding datagram that checks
// the tunnel MTU: odd, so proxy-allocated, and registered by nobody, so the
// client drops it unread (RFC 9298 §4).
const mtuProbeContextID = 1

// ipTunnel is the Handler of one CONNECT-IP session.
//
// It has no goroutine of its own. Packets from the network are checked on
// the device reader (returnPacket) and queued on the connection's sender,
// like CONNECT-UDP replies; the ICMP errors the proxy sends into the
// tunnel and the MTU probe go through the sender too, so no executor
// worker and no request goroutine waits in SendDatagram.
type ipTunnel struct {
	n     *ipNet
	s     *engine.Session
	req   *Request
	snd   *sender // the connection's reply sender
	scope *ipaddr.Scope

	addr4, addr6 netip.Addr
	off4, off6   uint64

	replyBook // its counters, and its replies with the sender

	// HandleDatagrams's state (one executor worker at a time).
	writes [][]byte
	icmp   icmpLimiter // ICMP errors into the tunnel
	// The tunnel's and the connection's rate limits (ratelimit.go) and
	// the connection's amplification budget (amplification.go); nil:
	// none. A packet's wire cost is its own length: it carries its IP
	// header.
	rate, connRate *rateLimits
	amp            *ampBudget

	// idle fires every Config.IdleTimeout (checkIdle); idleSeen is the
	// packets either way it saw last time. Owned by the timer's function.
	idle     *time.Timer
	idleSeen uint64

	// ICMP errors toward the network: Time Exceeded from the device
	// reader, Packet Too Big from the sender.
	retICMP   icmpLimiter
	closeOnce sync.Once

	// capMu serializes capsule handling (the request's goroutine) with
	// Established (the proxy's).
	capMu sync.Mutex
}

// isAssigned reports whether a is one of the tunnel's addresses.
func (t *ipTunnel) isAssigned(a netip.Addr) bool { return a == t.addr4 || a == t.addr6 }

// Established runs once the proxy has sent the 2xx: assign the tunnel its
// addresses and advertise its routes (RFC 9484 §4.7), unasked, then check
// that the connection carries 1280-byte packets.
func (t *ipTunnel) Established() {
	t.capMu.Lock()
	err := t.sendAssignment(nil)
	t.capMu.Unlock()
	if err == nil {
		err = t.req.WriteCapsule(wire.CapsuleRouteAdvertisement, wire.AppendRouteAdvertisement(nil, t.scope.Routes()))
	}
	if err != nil {
		t.s.CloseWithError(err)
		return
	}
	t.probeMTU()
}

// sendAssignment sends the full current assignment, answering the given
// requests with their IDs.
func (t *ipTunnel) sendAssignment(answers []wire.AssignedAddress) error {
	assigned := append(answers,
		wire.AssignedAddress{Prefix: netip.PrefixFrom(t.addr4, 32)},
		wire.AssignedAddress{Prefix: netip.PrefixFrom(t.addr6, 128)})
	return t.req.WriteCapsule(wire.CapsuleAddressAssign, wire.AppendAddressAssign(nil, assigned))
}

// The kinds of reply an ipTunnel queues on the sender (reply.tag).
const (
	ipReplyPacket uint8 = iota // a packet from the network
	ipReplyICMP                // an ICMP error of the proxy's, into the tunnel
	ipReplyProbe               // the MTU probe
)

// probeMTU queues one datagram as large as a 1280-byte IP packet would be,
// under an unregistered context ID: quic-go refuses it at once if the
// connection cannot carry it, and replied aborts the tunnel
// (RFC 9484 §10.1). A client without QUIC datagrams gets its packets in
// capsules, which carry any size: nothing to probe.
func (t *ipTunnel) probeMTU() {
	if !t.req.datagrams {
		return
	}
	b := t.n.bufs.get()
	b.n = minTunnelMTU
	clear(b.packet())
	t.sendOwn(b, mtuProbeContextID, ipReplyProbe)
}

// sendOwn queues a datagram of the proxy's own (an ICMP error, the MTU
// probe), its payload in b, on the connection's sender. Such datagrams are
// rare: they take a pooled buffer each, and when the tunnel has closed or
// the ring is full they are dropped (the sender counts a full ring).
func (t *ipTunnel) sendOwn(b *ipBuf, contextID uint64, tag uint8) {
	if !t.hold() || !t.send(t.snd, newIPReply(t, b, t.s.StreamID(), contextID, tag), nil) {
		t.n.bufs.put(b)
	}
}

// Capsules are the capsule types the tunnel takes besides DATAGRAM.
func (t *ipTunnel) Capsules() []uint64 {
	return []uint64{wire.CapsuleAddressAssign, wire.CapsuleAddressRequest, wire.CapsuleRouteAdvertisement}
}

// HandleCapsule handles a client capsule, on the request's goroutine. An
// ADDRESS_REQUEST is answered with the full assignment, the request IDs
// set on what was granted (RFC 9484 §4.7.2): a request for any address of a
// family, or for the tunnel's own, gets the tunnel's address; anything
// else is refused with the unspecified address. The client's own
// ADDRESS_ASSIGN and ROUTE_ADVERTISEMENT are checked and otherwise ignored:
// this proxy routes only to the addresses it assigned.
func (t *ipTunnel) HandleCapsule(typ uint64, value []byte) error {
	t.capMu.Lock()
	defer t.capMu.Unlock()
	switch typ {
	case wire.CapsuleAddressRequest:
		reqs, err := wire.ParseAddressRequest(value)
		if err != nil {
			return errors.Join(ErrBadIPCapsule, err)
		}
		answers := make([]wire.AssignedAddress, 0, len(reqs))
		for _, r := range reqs {
			mine := t.addr4
			if r.Prefix.Addr().Is6() {
				mine = t.addr6
			}
			a := wire.AssignedAddress{RequestID: r.RequestID, Prefix: netip.PrefixFrom(mine, mine.BitLen())}
			if !r.Prefix.Addr().IsUnspecified() && !r.Prefix.Contains(mine) {
				unspec := netip.IPv4Unspecified()
				if mine.Is6() {
					unspec = netip.IPv6Unspecified()
				}
				a.Prefix = netip.PrefixFrom(unspec, unspec.BitLen()) // refused
			}
			answers = append(answers, a)
		}
		t.n.c.addressRequests.Add(1)
		return t.sendAssignment(answers)
	case wire.CapsuleAddressAssign:
		if _, err := wire.ParseAddressAssign(value); err != nil {
			return errors.Join(ErrBadIPCapsule, err)
		}
	case wire.CapsuleRouteAdvertisement:
		if _, err := wire.ParseRouteAdvertisement(value); err != nil {
			return errors.Join(ErrBadIPCapsule, err)
		}
	}
	return nil
}

// HandleDatagrams sends a batch of client packets into the network, on the
// session goroutine. Each packet is checked, its hop limit decremented (the
// proxy is a router), and refused packets are answered with the ICMP error
// RFC 9484 §7.2.1 suggests, rate-limited.
func (t *ipTunnel) HandleDatagrams(batch [][]byte) {
	w := t.writes[:0]
	mtu := t.n.dev.MTU()
	for _, d := range batch {
		pkt, ok := t.c.contextZero(d)
		if !ok {
			continue
		}
		h, err := ippkt.Parse(pkt)
		if err != nil {
			t.c.dropMalformed.Add(1)
			continue
		}
		switch {
		case !t.isAssigned(h.Src):
			// RFC 9484 §4.8: the source must be an address assigned to
			// the tunnel.
			t.c.dropSource.Add(1)
			t.icmpToClient(pkt, func(from netip.Addr) ([]byte, error) {
				return ippkt.DestinationUnreachable(pkt, from, ippkt.SourcePolicy)
			})
		case ippkt.IsLinkLocal(h.Dst):
			// Link-local traffic is never forwarded (RFC 9484 §4.8).
			t.c.dropScope.Add(1)
		case !t.scope.Allows(h.Dst, h.Proto, isICMP(h) || h.Fragment == ippkt.LaterFragment),
			t.n.refusesHost(h.Dst): // an address the host took after the scope was set
			t.c.dropScope.Add(1)
			t.icmpToClient(pkt, func(from netip.Addr) ([]byte, error) {
				return ippkt.DestinationUnreachable(pkt, from, ippkt.AdminProhibited)
			})
		case len(pkt) > mtu:
			t.c.dropOversize.Add(1)
			t.icmpToClient(pkt, func(from netip.Addr) ([]byte, error) { return ippkt.PacketTooBig(pkt, from, mtu) })
		case !ippkt.DecrementHopLimit(pkt):
			t.c.dropHopLimit.Add(1)
			t.icmpToClient(pkt, func(from netip.Addr) ([]byte, error) { return ippkt.TimeExceeded(pkt, from) })
		default:
			w = append(w, pkt)
		}
	}
	w = t.limit(w)
	t.writes = w
	if len(w) == 0 {
		return
	}
	for len(w) > 0 {
		n, err := t.n.dev.WritePackets(w)
		t.c.toTarget.Add(uint64(n))
		for _, p := range w[:n] {
			t.c.toTargetBytes.Add(uint64(len(p)))
		}
		if err == nil {
			break
		}
		// w[n] was refused; the rest may go on unless the device closed,
		// which happens only as the proxy closes: then w[n:] are teardown
		// discards, not send errors.
		if errors.Is(err, net.ErrClosed) {
			t.c.dropTeardown.Add(uint64(len(w) - n))
			break
		}
		t.c.dropSendError.Add(1)
		w = w[n+1:]
	}
	clear(t.writes)
}

func isICMP(h ippkt.Header) bool {
	return h.Version == 4 && h.Proto == ippkt.ProtoICMP || h.Version == 6 && h.Proto == ippkt.ProtoICMPv6
}

// from is the proxy's address of the packet's family: the source of the
// ICMP errors it sends.
func (t *ipTunnel) from(v6 bool) netip.Addr {
	if v6 {
		return t.n.pool6.Own()
	}
	return t.n.pool4.Own()
}

// icmpToClient answers the client's refused packet pkt with the ICMP error
// build makes (from the proxy's address of pkt's family), rate-limited. It
// is icmpToNetwork's mirror, on the client → network side.
func (t *ipTunnel) icmpToClient(pkt []byte, build func(from netip.Addr) ([]byte, error)) {
	if !t.icmp.allow() {
		return
	}
	reply, err := build(t.from(pkt[0]>>4 == 6)) // pkt passed ippkt.Parse
	if err != nil || len(reply) > ipBufSize-ipHeadroom {
		return // ippkt.ErrNoICMP: an error for an error, a multicast source, ...
	}
	b := t.n.bufs.get()
	b.n = copy(b.data[ipHeadroom:], reply)
	t.sendOwn(b, 0, ipReplyICMP) // counted as sent in replied
}

// returnPacket checks one packet from the network for the tunnel, on the
// device reader, and queues it on the connection's sender, writing the
// HTTP Datagram header into b's headroom. h is b's parsed header. It
// reports whether b went to the sender; on false b is still the caller's.
// It never waits: a full ring drops the packet (return_queue_full, as for
// CONNECT-UDP), and so does a tunnel that is closing (ip_return_closed).
func (t *ipTunnel) returnPacket(b *ipBuf, h ippkt.Header) bool {
	if !t.hold() {
		t.n.c.returnClosed.Add(1) // proxy-wide: the tunnel's counters may have folded
		return false
	}
	pkt := b.packet()
	// Only traffic from within the advertised scope reaches the client,
	// but ICMP errors may come from any router on the path (RFC 9484
	// §7.2.1).
	if !t.scope.Allows(h.Src, h.Proto, isICMP(h) || h.Fragment == ippkt.LaterFragment) {
		t.c.dropScope.Add(1)
		t.settled()
		return false
	}
	if !ippkt.DecrementHopLimit(pkt) {
		t.c.dropHopLimit.Add(1)
		t.icmpToNetwork(func(from netip.Addr) ([]byte, error) { return ippkt.TimeExceeded(pkt, from) }, h.Version == 6)
		t.settled()
		return false
	}
	return t.send(t.snd, newIPReply(t, b, t.s.StreamID(), 0, ipReplyPacket), &t.c.dropReturnQueueFull)
}

func (t *ipTunnel) request() *Request { return t.req }

// replied counts the outcome of one of the tunnel's replies and frees its
// buffer, on the sender's goroutine; the last reply of a closed tunnel
// folds its counters into the proxy's totals. A packet from the network
// too large for the client's QUIC datagrams is answered toward its sender
// with Packet Too Big carrying the tunnel's MTU (RFC 9484 §10.1); an MTU
// probe the connection refused as too large aborts the tunnel.
func (t *ipTunnel) replied(r *reply, err error) {
	tooLarge, isTooLarge := errors.AsType[*quic.DatagramTooLargeError](err)
	switch r.tag {
	case ipReplyPacket:
		if isTooLarge && !t.closed.Load() {
			t.c.dropReturnOversize.Add(1)
			pkt := r.ip.packet()
			mtu := int(tooLarge.MaxDatagramPayloadSize) - int(r.qlen) - 1 // context ID 0: one byte
			t.icmpToNetwork(func(from netip.Addr) ([]byte, error) { return ippkt.PacketTooBig(pkt, from, mtu) }, pkt[0]>>4 == 6)
		} else {
			t.countReply(r, err)
		}
	case ipReplyICMP:
		if err == nil {
			t.n.c.icmpToClient.Add(1)
		}
	case ipReplyProbe:
		if isTooLarge && !t.closed.Load() {
			t.n.c.mtuAborts.Add(1)
			t.req.abort(wire.ErrCodeGeneralProtocolError)
			t.s.CloseWithError(ErrTunnelMTU)
		}
	}
	t.n.bufs.put(r.ip)
	t.settled()
}

// icmpToNetwork writes an ICMP error into the network, rate-limited.
func (t *ipTunnel) icmpToNetwork(build func(from netip.Addr) ([]byte, error), v6 bool) {
	if !t.retICMP.allow() {
		return
	}
	reply, err := build(t.from(v6))
	if err != nil {
		return
	}
	if _, err := t.n.dev.WritePackets([][]byte{reply}); err == nil {
		t.n.c.icmpToNetwork.Add(1)
	}
}

// Close ends the tunnel: the addresses stop routing to it and go back to
// the pools. It waits for nothing: the device reader queues nothing for
// the tunnel once its book is closed (it counts ip_return_closed instead),
// and replies already queued are still sent (or dropped, if the request
// has ended: Request.WriteCapsule refuses, and nothing else writes to the
// stream) by the sender, which folds the counters after the last one.
func (t *ipTunnel) Close(reason error) {
	t.closeOnce.Do(func() {
		if t.idle != nil {
			t.idle.Stop()
		}
		t.n.by4.CompareAndDelete(t.off4, t) // unpublish before release
		t.n.by6.CompareAndDelete(t.off6, t)
		t.closeBook()
		t.n.pool4.Release(t.off4)
		t.n.pool6.Release(t.off6)
	})
}

// icmpLimiter allows icmpRate ICMP errors per second per tunnel and
// direction (RFC 4443 §2.4(f) asks for a limit). It is safe for concurrent
// use; it is asked only on error paths.
type icmpLimiter struct {
	mu     sync.Mutex
	tokens int
	last   time.Time
}

const icmpRate = 100

func (l *icmpLimiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) >= time.Second {
		l.tokens, l.last = icmpRate, now
	}
	if l.tokens == 0 {
		return false
	}
	l.tokens--
	return true
}

// limit cuts w to the rate limits and then to the amplification budget,
// dropping and counting the rest.
func (t *ipTunnel) limit(w [][]byte) [][]byte {
	if len(w) == 0 {
		return w
	}
	w, size := limitBatch(w, t.rate, t.connRate, &t.c.dropRateLimited)
	if t.amp == nil || len(w) == 0 {
		return w
	}
	if t.rate == nil && t.connRate == nil {
		for _, p := range w {
			size += int64(len(p))
		}
	}
	if t.amp.take(size) {
		return w
	}
	for i, p := range w { // the whole batch did not fit: keep what does, in order
		if !t.amp.take(int64(len(p))) {
			t.c.dropAmplification.Add(uint64(len(w) - i))
			clear(w[i:])
			return w[:i]
		}
	}
	return w
}

// checkIdle runs on the idle timer: it ends a tunnel that carried no
// packet either way since the last check, and looks again later otherwise.
// It reads the tunnel's counters, so the data path pays nothing for it; a
// tunnel ends between one and two IdleTimeouts after its last packet.
func (t *ipTunnel) checkIdle() {
	seen := t.c.toTarget.Load() + t.c.toClient.Load()
	if seen != t.idleSeen {
		t.idleSeen = seen
		t.idle.Reset(t.n.p.cfg.IdleTimeout)
		return
	}
	t.n.p.counters.tunnelIdleClosed.Add(1)
	t.s.CloseWithError(ErrIdleTimeout)
}
