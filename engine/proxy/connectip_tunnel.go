package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/ringbuf"
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
type ipTunnel struct {
	n     *ipNet
	s     *engine.Session
	req   *Request
	scope *ipaddr.Scope

	addr4, addr6 netip.Addr
	off4, off6   uint64

	c tunnelCounters

	// The session goroutine's state.
	writes [][]byte
	icmp   icmpLimiter

	// The return path.
	ret       *ringbuf.Ring[*ipBuf]
	retICMP   icmpLimiter   // routineIPReturn's
	done      chan struct{} // closed when routineIPReturn has ended
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
	if err == nil {
		err = t.probeMTU()
	}
	if err != nil {
		if errors.Is(err, ErrTunnelMTU) {
			t.n.c.mtuAborts.Add(1)
			t.req.stream.CancelRead(wire.ErrCodeGeneralProtocolError)
			t.req.stream.CancelWrite(wire.ErrCodeGeneralProtocolError)
		}
		t.s.CloseWithError(err)
	}
}

// sendAssignment sends the full current assignment, answering the given
// requests with their IDs.
func (t *ipTunnel) sendAssignment(answers []wire.AssignedAddress) error {
	assigned := append(answers,
		wire.AssignedAddress{Prefix: netip.PrefixFrom(t.addr4, 32)},
		wire.AssignedAddress{Prefix: netip.PrefixFrom(t.addr6, 128)})
	return t.req.WriteCapsule(wire.CapsuleAddressAssign, wire.AppendAddressAssign(nil, assigned))
}

// probeMTU sends one datagram as large as a 1280-byte IP packet would be,
// under an unregistered context ID: quic-go refuses it at once if the
// connection cannot carry it.
func (t *ipTunnel) probeMTU() error {
	buf := make([]byte, wire.MaxDatagramHeaderLen+minTunnelMTU)
	err := t.s.SendDatagram(buf, wire.MaxDatagramHeaderLen, mtuProbeContextID)
	if _, tooLarge := errors.AsType[*quic.DatagramTooLargeError](err); tooLarge {
		return ErrTunnelMTU
	}
	return nil
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
		case !t.scope.Allows(h.Dst, h.Proto, isICMP(h) || h.Fragment == ippkt.LaterFragment):
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
	if err != nil {
		return // ippkt.ErrNoICMP: an error for an error, a multicast source, ...
	}
	buf := make([]byte, wire.MaxDatagramHeaderLen+len(reply))
	copy(buf[wire.MaxDatagramHeaderLen:], reply)
	if t.s.SendDatagram(buf, wire.MaxDatagramHeaderLen, 0) == nil {
		t.n.c.icmpToClient.Add(1)
	}
}

// routineIPReturn sends the packets routineDeviceReceive queued for this
// tunnel to the client.
func (t *ipTunnel) routineIPReturn() {
	defer close(t.done)
	batch := make([]*ipBuf, 32)
	for {
		k := t.ret.PopBatch(batch)
		if k == 0 {
			if t.ret.Closed() {
				break
			}
			t.ret.Wait(nil) // Close wakes it
			continue
		}
		for i, b := range batch[:k] {
			t.returnPacket(b)
			t.n.bufs.put(b)
			batch[i] = nil
		}
	}
	// The tunnel ended: give back whatever is left.
	t.ret.Drain(func(b *ipBuf) { t.c.dropReturnSendError.Add(1); t.n.bufs.put(b) })
}

// returnPacket checks one packet from the network and sends it to the
// client.
func (t *ipTunnel) returnPacket(b *ipBuf) {
	pkt := b.packet()
	h, err := ippkt.Parse(pkt)
	if err != nil {
		t.c.dropMalformed.Add(1)
		return
	}
	// Only traffic from within the advertised scope reaches the client,
	// but ICMP errors may come from any router on the path (RFC 9484
	// §7.2.1).
	if !t.scope.Allows(h.Src, h.Proto, isICMP(h) || h.Fragment == ippkt.LaterFragment) {
		t.c.dropScope.Add(1)
		return
	}
	if !ippkt.DecrementHopLimit(pkt) {
		t.c.dropHopLimit.Add(1)
		t.icmpToNetwork(func(from netip.Addr) ([]byte, error) { return ippkt.TimeExceeded(pkt, from) }, h.Version == 6)
		return
	}
	err = t.s.SendDatagram(b.data[:ipHeadroom+b.n], ipHeadroom, 0)
	if err == nil {
		t.c.toClient.Add(1)
		t.c.toClientBytes.Add(uint64(b.n))
		return
	}
	if tooLarge, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
		// RFC 9484 §10.1: tell the sender the tunnel's MTU.
		t.c.dropReturnOversize.Add(1)
		mtu := int(tooLarge.MaxDatagramPayloadSize) - quicvarint.Len(t.s.StreamID()/4) - 1
		t.icmpToNetwork(func(from netip.Addr) ([]byte, error) { return ippkt.PacketTooBig(pkt, from, mtu) }, h.Version == 6)
		return
	}
	t.c.dropReturnSendError.Add(1)
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
// the pools, and the return goroutine ends before Close returns.
func (t *ipTunnel) Close(reason error) {
	t.closeOnce.Do(func() {
		t.n.by4.CompareAndDelete(t.off4, t) // unpublish before release
		t.n.by6.CompareAndDelete(t.off6, t)
		t.ret.Close() // routineIPReturn wakes and ends
		<-t.done
		t.n.pool4.Release(t.off4)
		t.n.pool6.Release(t.off6)
		t.n.p.trackTunnel(&t.c, false)
	})
}

// icmpLimiter allows icmpRate ICMP errors per second per tunnel and
// direction (RFC 4443 §2.4(f) asks for a limit). One goroutine uses it.
type icmpLimiter struct {
	tokens int
	last   time.Time
}

const icmpRate = 100

func (l *icmpLimiter) allow() bool {
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
