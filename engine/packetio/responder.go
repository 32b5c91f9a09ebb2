package packetio

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// responderQueueLen bounds the replies waiting for ReadPackets.
const responderQueueLen = 512

// replyHopLimit is the TTL (IPv4) or Hop Limit (IPv6) of every reply the
// Responder builds: the usual initial value of Linux and gVisor.
const replyHopLimit = 64

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

var errQueueFull = errors.New("packetio: responder queue full")

// ResponderStats are a Responder's counters since NewResponder. Every
// packet WritePackets accepts is counted in Written and in exactly one of
// EchoReplies, NotLocal, Unsupported, Malformed and QueueDrops.
type ResponderStats struct {
	Written     uint64 // packets accepted by WritePackets
	Rejected    uint64 // packets WritePackets refused (ErrInvalidPacket)
	EchoReplies uint64 // ICMP, ICMPv6 and UDP echo replies queued
	NotLocal    uint64 // dropped: destination is not a responder address
	Unsupported uint64 // dropped: for the responder but not an echo request it answers
	Malformed   uint64 // dropped: inconsistent lengths or a bad checksum
	QueueDrops  uint64 // replies dropped because the queue was full
	Injected    uint64 // packets queued by Inject
	Read        uint64 // packets returned by ReadPackets
}

// Responder is an in-process Device for unit tests: a host that owns a few
// addresses and answers, by building the reply packets itself,
//   - ICMP echo requests (IPv4) and ICMPv6 echo requests, and
//   - UDP datagrams to any port, echoed back with addresses and ports
//     swapped,
//
// when they are addressed to one of its addresses. Replies have TTL/Hop
// Limit 64 and freshly computed checksums. Everything else is counted and
// dropped: other destinations, other protocols and ICMP types, fragments,
// IPv6 extension headers, multicast or unspecified sources, bad checksums,
// and requests whose reply would exceed the MTU (DefaultMTU).
//
// Replies wait in a bounded queue (512 packets) for ReadPackets; when it is
// full the reply is dropped and counted. The Responder starts no goroutines
// and its steady state allocates nothing.
type Responder struct {
	addrs []netip.Addr
	q     *packetQueue

	written     atomic.Uint64
	rejected    atomic.Uint64
	echoReplies atomic.Uint64
	notLocal    atomic.Uint64
	unsupported atomic.Uint64
	malformed   atomic.Uint64
	queueDrops  atomic.Uint64
	injected    atomic.Uint64
	read        atomic.Uint64
}

var _ Device = (*Responder)(nil)

// NewResponder returns a Responder that owns addrs. IPv4-mapped IPv6
// addresses are taken as IPv4. It panics on an invalid address.
func NewResponder(addrs ...netip.Addr) *Responder {
	r := &Responder{q: newPacketQueue(responderQueueLen, DefaultMTU)}
	for _, a := range addrs {
		if !a.IsValid() {
			panic("packetio: NewResponder: invalid address")
		}
		r.addrs = append(r.addrs, a.Unmap().WithZone(""))
	}
	return r
}

// MTU implements Device.
func (r *Responder) MTU() int { return DefaultMTU }

// BatchSize implements Device.
func (r *Responder) BatchSize() int { return idealBatchSize }

// Stats returns r's counters.
func (r *Responder) Stats() ResponderStats {
	return ResponderStats{
		Written:     r.written.Load(),
		Rejected:    r.rejected.Load(),
		EchoReplies: r.echoReplies.Load(),
		NotLocal:    r.notLocal.Load(),
		Unsupported: r.unsupported.Load(),
		Malformed:   r.malformed.Load(),
		QueueDrops:  r.queueDrops.Load(),
		Injected:    r.injected.Load(),
		Read:        r.read.Load(),
	}
}

// ReadPackets implements Device. Replies come in the order of the requests.
func (r *Responder) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	n, err := r.q.read(bufs, sizes)
	r.read.Add(uint64(n))
	return n, err
}

// WritePackets implements Device. The reply to a request is queued before
// WritePackets moves on to the next packet.
func (r *Responder) WritePackets(pkts [][]byte) (int, error) {
	if r.isClosed() {
		return 0, errClosed
	}
	for i, p := range pkts {
		if err := checkPacket(p); err != nil {
			r.rejected.Add(1)
			return i, err
		}
		r.written.Add(1)
		r.handle(p)
	}
	return len(pkts), nil
}

// Inject queues a copy of pkt for ReadPackets as if the network had sent it
// unprompted, for tests of traffic towards clients. It fails if pkt is not
// an IP packet, is longer than the MTU, or the queue is full.
func (r *Responder) Inject(pkt []byte) error {
	if r.isClosed() {
		return errClosed
	}
	if err := checkPacket(pkt); err != nil {
		return err
	}
	if len(pkt) > r.q.size {
		return fmt.Errorf("packetio: inject %d bytes, MTU %d", len(pkt), r.q.size)
	}
	s := r.q.tryGet()
	if s == nil {
		return errQueueFull
	}
	s.n = copy(s.buf, pkt)
	r.q.push(s)
	r.injected.Add(1)
	return nil
}

// Close implements Device. The Responder has no goroutines to stop.
func (r *Responder) Close() error {
	r.q.close()
	return nil
}

func (r *Responder) isClosed() bool {
	select {
	case <-r.q.done:
		return true
	default:
		return false
	}
}

// verdict is what the Responder does with one packet.
type verdict uint8

const (
	verdictEcho verdict = iota
	verdictNotLocal
	verdictUnsupported
	verdictMalformed
)

// handle answers or drops one packet that passed checkPacket.
func (r *Responder) handle(p []byte) {
	p, v := r.classify(p)
	switch v {
	case verdictNotLocal:
		r.notLocal.Add(1)
		return
	case verdictUnsupported:
		r.unsupported.Add(1)
		return
	case verdictMalformed:
		r.malformed.Add(1)
		return
	}
	if len(p) > r.q.size {
		r.unsupported.Add(1) // a real host would fragment the reply
		return
	}
	s := r.q.tryGet()
	if s == nil {
		r.queueDrops.Add(1)
		return
	}
	s.n = copy(s.buf, p)
	buildEchoReply(s.buf[:s.n])
	r.q.push(s)
	r.echoReplies.Add(1)
}

func (r *Responder) isLocal(a netip.Addr) bool {
	for _, l := range r.addrs {
		if l == a {
			return true
		}
	}
	return false
}

// classify decides what to do with p, a packet whose version nibble is 4 or
// 6. For verdictEcho it also returns p cut to the length its IP header
// gives, which is the request buildEchoReply turns around.
func (r *Responder) classify(p []byte) ([]byte, verdict) {
	if p[0]>>4 == 4 {
		return r.classify4(p)
	}
	return r.classify6(p)
}

func (r *Responder) classify4(p []byte) ([]byte, verdict) {
	ip := header.IPv4(p)
	if !ip.IsValid(len(p)) || !ip.IsChecksumValid() {
		return nil, verdictMalformed
	}
	p = p[:ip.TotalLength()]
	src := netip.AddrFrom4([4]byte(ip.SourceAddressSlice()))
	dst := netip.AddrFrom4([4]byte(ip.DestinationAddressSlice()))
	if !r.isLocal(dst) {
		return nil, verdictNotLocal
	}
	if src.IsMulticast() || src.IsUnspecified() || src == limitedBroadcast {
		return nil, verdictUnsupported
	}
	if ip.More() || ip.FragmentOffset() != 0 {
		return nil, verdictUnsupported
	}
	seg := p[ip.HeaderLength():]
	switch ip.TransportProtocol() {
	case header.ICMPv4ProtocolNumber:
		if len(seg) < header.ICMPv4MinimumSize {
			return nil, verdictMalformed
		}
		if checksum.Checksum(seg, 0) != 0xffff {
			return nil, verdictMalformed
		}
		icmp := header.ICMPv4(seg)
		if icmp.Type() != header.ICMPv4Echo || icmp.Code() != 0 {
			return nil, verdictUnsupported
		}
		return p, verdictEcho
	case header.UDPProtocolNumber:
		if len(seg) < header.UDPMinimumSize || int(header.UDP(seg).Length()) != len(seg) {
			return nil, verdictMalformed
		}
		// A zero checksum means none in IPv4 (RFC 768).
		if header.UDP(seg).Checksum() != 0 && !transportChecksumValid(seg, header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress()) {
			return nil, verdictMalformed
		}
		return p, verdictEcho
	}
	return nil, verdictUnsupported
}

func (r *Responder) classify6(p []byte) ([]byte, verdict) {
	ip := header.IPv6(p)
	if !ip.IsValid(len(p)) {
		return nil, verdictMalformed
	}
	p = p[:header.IPv6MinimumSize+int(ip.PayloadLength())]
	src := netip.AddrFrom16([16]byte(ip.SourceAddressSlice()))
	dst := netip.AddrFrom16([16]byte(ip.DestinationAddressSlice()))
	if !r.isLocal(dst) {
		return nil, verdictNotLocal
	}
	if src.IsMulticast() || src.IsUnspecified() {
		return nil, verdictUnsupported
	}
	seg := p[header.IPv6MinimumSize:]
	switch ip.TransportProtocol() {
	case header.ICMPv6ProtocolNumber:
		if len(seg) < header.ICMPv6EchoMinimumSize {
			return nil, verdictMalformed
		}
		if !transportChecksumValid(seg, header.ICMPv6ProtocolNumber, ip.SourceAddress(), ip.DestinationAddress()) {
			return nil, verdictMalformed
		}
		icmp := header.ICMPv6(seg)
		if icmp.Type() != header.ICMPv6EchoRequest || icmp.Code() != 0 {
			return nil, verdictUnsupported
		}
		return p, verdictEcho
	case header.UDPProtocolNumber:
		if len(seg) < header.UDPMinimumSize || int(header.UDP(seg).Length()) != len(seg) {
			return nil, verdictMalformed
		}
		// The UDP checksum is mandatory over IPv6 (RFC 8200, section 8.1).
		if !transportChecksumValid(seg, header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress()) {
			return nil, verdictMalformed
		}
		return p, verdictEcho
	}
	return nil, verdictUnsupported // extension headers included
}

// buildEchoReply turns the echo request b, accepted by classify, into its
// reply in place: addresses (and UDP ports) swapped, TTL or Hop Limit reset,
// ICMP type changed, checksums recomputed.
func buildEchoReply(b []byte) {
	if b[0]>>4 == 4 {
		ip := header.IPv4(b)
		src, dst := ip.SourceAddress(), ip.DestinationAddress()
		ip.SetSourceAddress(dst)
		ip.SetDestinationAddress(src)
		ip.SetTTL(replyHopLimit)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		seg := b[ip.HeaderLength():]
		switch ip.TransportProtocol() {
		case header.ICMPv4ProtocolNumber:
			icmp := header.ICMPv4(seg)
			icmp.SetType(header.ICMPv4EchoReply)
			icmp.SetChecksum(0)
			icmp.SetChecksum(^checksum.Checksum(seg, 0))
		case header.UDPProtocolNumber:
			swapPorts(header.UDP(seg))
			setUDPChecksum(header.UDP(seg), dst, src)
		}
		return
	}
	ip := header.IPv6(b)
	src, dst := ip.SourceAddress(), ip.DestinationAddress()
	ip.SetSourceAddress(dst)
	ip.SetDestinationAddress(src)
	ip.SetHopLimit(replyHopLimit)
	seg := b[header.IPv6MinimumSize:]
	switch ip.TransportProtocol() {
	case header.ICMPv6ProtocolNumber:
		icmp := header.ICMPv6(seg)
		icmp.SetType(header.ICMPv6EchoReply)
		icmp.SetChecksum(0)
		icmp.SetChecksum(^transportChecksum(seg, header.ICMPv6ProtocolNumber, dst, src))
	case header.UDPProtocolNumber:
		swapPorts(header.UDP(seg))
		setUDPChecksum(header.UDP(seg), dst, src)
	}
}

func swapPorts(u header.UDP) {
	sp, dp := u.SourcePort(), u.DestinationPort()
	u.SetSourcePort(dp)
	u.SetDestinationPort(sp)
}

// setUDPChecksum fills in u's checksum for a datagram from src to dst.
func setUDPChecksum(u header.UDP, src, dst tcpip.Address) {
	u.SetChecksum(0)
	xsum := ^transportChecksum(u, header.UDPProtocolNumber, src, dst)
	if xsum == 0 {
		xsum = 0xffff // zero means "no checksum" (RFC 768)
	}
	u.SetChecksum(xsum)
}

// transportChecksum is the one's complement sum of seg and its pseudo-header.
func transportChecksum(seg []byte, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address) uint16 {
	xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg)))
	return checksum.Checksum(seg, xsum)
}

func transportChecksumValid(seg []byte, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address) bool {
	return transportChecksum(seg, proto, src, dst) == 0xffff
}
