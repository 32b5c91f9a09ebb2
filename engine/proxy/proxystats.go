package proxy

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// proxyCounters are the proxy's own totals (the routers keep theirs). All
// are touched off the per-datagram path except where noted.
type proxyCounters struct {
	connsAccepted       atomic.Uint64
	connsRejected       atomic.Uint64 // MaxConns
	limitRetries        atomic.Uint64 // Retries asked for with half of MaxConns taken (addrlimit.go)
	tunnelsOpened       atomic.Uint64
	tunnelRefusedPolicy atomic.Uint64
	tunnelFailDNS       atomic.Uint64
	tunnelFailDial      atomic.Uint64
	tunnelIdleClosed    atomic.Uint64
	capsuleDatagrams    atomic.Uint64 // DATAGRAM capsules received (per capsule)
	capsuleMalformed    atomic.Uint64 // empty DATAGRAM capsules (no context ID), dropped before the copy
	capsuleOversize     atomic.Uint64 // DATAGRAM capsules over the largest payload, dropped before the copy
	capsuleErrors       atomic.Uint64 // malformed or oversize capsules
	datagramErrors      atomic.Uint64 // unparsable quarter stream IDs (each closes a connection)
	// The connections' reply senders (sender.go): batches popped,
	// replies popped, pushes refused by a full ring, and wake-ups of
	// senders that have exited (a live sender's are read from its ring).
	senderBatches   atomic.Uint64
	senderDatagrams atomic.Uint64
	senderQueueFull atomic.Uint64
	senderWakeups   atomic.Uint64
	rejected        counterVec // refused requests by HTTP status

	// folded holds the counters of tunnels that have ended; live tunnels
	// are in Proxy.live.
	folded tunnelCounters
}

// tunnelCounters count one tunnel's datagrams. They are written by the
// session's consumer (client → target: HandleDatagrams, on an executor
// worker) and by the return path (target → client: the poller or the
// CONNECT-IP device reader, then the connection's sender); some fields by
// several (dropOversize, targetUnreachable, and for CONNECT-IP dropScope,
// dropHopLimit), so every write is an atomic add, never a load-and-store.
// Atomics also let Stats read them while they run. A tunnel's replyBook
// says when they fold into the totals.
type tunnelCounters struct {
	toTarget            atomic.Uint64 // datagrams written to the target
	toTargetBytes       atomic.Uint64
	toClient            atomic.Uint64 // datagrams sent to the client
	toClientBytes       atomic.Uint64
	dropMalformed       atomic.Uint64 // no parsable context ID
	dropUnknownContext  atomic.Uint64 // context ID other than 0
	dropOversize        atomic.Uint64 // over MaxDatagramPayload, or refused by the kernel as too large
	dropAmplification   atomic.Uint64 // over the connection's byte budget toward targets (amplification.go)
	dropRateLimited     atomic.Uint64 // over the tunnel's or the connection's rate toward targets (ratelimit.go)
	dropSendError       atomic.Uint64 // the target socket failed
	dropReturnOversize  atomic.Uint64 // reply too large for the client's QUIC datagrams
	dropReturnSendError atomic.Uint64 // the QUIC connection refused the reply
	dropReturnQueueFull atomic.Uint64 // the connection's reply ring was full (a slow client)
	dropReturnClosed    atomic.Uint64 // the connection ended with the reply still queued
	dropReturnBlocked   atomic.Uint64 // the TCP stream toward the client was backed up (h2, h1)
	dropTeardown        atomic.Uint64 // discarded because the tunnel (or the proxy) was ending
	targetUnreachable   atomic.Uint64 // ICMP errors reported by the target socket
	// CONNECT-IP only.
	dropSource   atomic.Uint64 // client packet from an address not assigned to the tunnel
	dropScope    atomic.Uint64 // packet outside the tunnel's scope, or link-local
	dropHopLimit atomic.Uint64 // TTL / Hop Limit expired at the proxy
}

// contextZero returns the payload of a client datagram that carries context
// ID 0, the only one a tunnel registers (RFC 9298 §4, RFC 9484 §6), and
// counts any other as dropped.
func (c *tunnelCounters) contextZero(d []byte) ([]byte, bool) {
	ctxID, payload, err := wire.ParseContextID(d)
	switch {
	case err != nil:
		c.dropMalformed.Add(1)
		return nil, false
	case ctxID != 0:
		c.dropUnknownContext.Add(1)
		return nil, false
	}
	return payload, true
}

// countReturnError counts a reply the QUIC connection refused: too large
// for its datagrams, or refused otherwise.
func (c *tunnelCounters) countReturnError(err error) {
	if err == errStreamBlocked { // a TCP carrier's stream (carrier.go)
		c.dropReturnBlocked.Add(1)
	} else if _, tooLarge := errors.AsType[*quic.DatagramTooLargeError](err); tooLarge {
		c.dropReturnOversize.Add(1)
	} else {
		c.dropReturnSendError.Add(1)
	}
}

// tunnelFields pairs each tunnel counter with the Stats field that sums it
// over tunnels. addTo and Stats both walk it, so a new counter is a field
// above, a field of Stats, and one line here.
var tunnelFields = [...]struct {
	c  func(*tunnelCounters) *atomic.Uint64
	st func(*Stats) *uint64
}{
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.toTarget }, func(s *Stats) *uint64 { return &s.ToTarget }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.toTargetBytes }, func(s *Stats) *uint64 { return &s.ToTargetBytes }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.toClient }, func(s *Stats) *uint64 { return &s.ToClient }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.toClientBytes }, func(s *Stats) *uint64 { return &s.ToClientBytes }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropMalformed }, func(s *Stats) *uint64 { return &s.DropMalformed }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropUnknownContext }, func(s *Stats) *uint64 { return &s.DropUnknownContext }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropOversize }, func(s *Stats) *uint64 { return &s.DropOversize }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropAmplification }, func(s *Stats) *uint64 { return &s.DropAmplification }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropRateLimited }, func(s *Stats) *uint64 { return &s.DropRateLimited }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropSendError }, func(s *Stats) *uint64 { return &s.DropSendError }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropReturnOversize }, func(s *Stats) *uint64 { return &s.DropReturnOversize }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropReturnSendError }, func(s *Stats) *uint64 { return &s.DropReturnSendError }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropReturnQueueFull }, func(s *Stats) *uint64 { return &s.DropReturnQueueFull }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropReturnBlocked }, func(s *Stats) *uint64 { return &s.DropReturnBlocked }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropReturnClosed }, func(s *Stats) *uint64 { return &s.DropReturnClosed }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropTeardown }, func(s *Stats) *uint64 { return &s.DropTeardown }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.targetUnreachable }, func(s *Stats) *uint64 { return &s.TargetUnreachable }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropSource }, func(s *Stats) *uint64 { return &s.DropSource }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropScope }, func(s *Stats) *uint64 { return &s.DropScope }},
	{func(c *tunnelCounters) *atomic.Uint64 { return &c.dropHopLimit }, func(s *Stats) *uint64 { return &s.DropHopLimit }},
}

// addTo adds c's counts to dst: the totals of tunnels that have ended.
func (c *tunnelCounters) addTo(dst *tunnelCounters) {
	for _, f := range tunnelFields {
		f.c(dst).Add(f.c(c).Load())
	}
}

// addToStats adds c's counts to the fields of st that sum them.
func (c *tunnelCounters) addToStats(st *Stats) {
	for _, f := range tunnelFields {
		*f.st(st) += f.c(c).Load()
	}
}

// trackTunnel adds a tunnel's counters to the live set, or folds them into
// the totals and removes them.
func (p *Proxy) trackTunnel(c *tunnelCounters, live bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if live {
		p.live[c] = struct{}{}
		return
	}
	delete(p.live, c)
	c.addTo(&p.counters.folded)
}

// counterVec counts refusals by HTTP status.
type counterVec struct {
	byStatus [len(refusalStatuses) + 1]atomic.Uint64 // last: any other status
}

// refusalStatuses are the statuses the proxy refuses tunnels with.
var refusalStatuses = [...]int{
	http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
	http.StatusMethodNotAllowed, http.StatusProxyAuthRequired, http.StatusInternalServerError,
	http.StatusNotImplemented, http.StatusBadGateway, http.StatusServiceUnavailable,
}

func (v *counterVec) inc(status int) {
	for i, s := range refusalStatuses {
		if s == status {
			v.byStatus[i].Add(1)
			return
		}
	}
	v.byStatus[len(refusalStatuses)].Add(1)
}

func (v *counterVec) snapshot() map[int]uint64 {
	m := make(map[int]uint64)
	for i, s := range refusalStatuses {
		if n := v.byStatus[i].Load(); n > 0 {
			m[s] = n
		}
	}
	if n := v.byStatus[len(refusalStatuses)].Load(); n > 0 {
		m[0] = n
	}
	return m
}

// Stats is a snapshot of a proxy's counters, for /metrics and tests.
type Stats struct {
	Conns         int64  // connections now
	ConnsAccepted uint64 // connections served
	ConnsRejected uint64 // connections refused at MaxConns
	// Connection attempts refused by client address before their
	// handshake (addrlimit.go): over NewConnsPerAddr, over
	// MaxConnsPerAddr, or a new address with the table full; and Retries
	// asked for (by the per-address limiter, or with half of MaxConns
	// taken).
	AddrRefusedRate, AddrRefusedConcurrent, AddrRefusedTableFull, AddrRetries uint64
	Tunnels                                                                   int64             // tunnels now (pending and active)
	TunnelsOpened                                                             uint64            // tunnels that got a 2xx
	Rejected                                                                  map[int]uint64    // refused requests by status (0: other)
	AuthRefused                                                               map[string]uint64 // authentication refusals by reason (AuthTokenMissing, ...)
	RefusedPolicy                                                             uint64            // of those: 403 by target policy
	FailedDNS                                                                 uint64            // of those: 502 by DNS failure or timeout
	FailedDial                                                                uint64            // of those: 502 because no socket could be opened
	IdleClosed                                                                uint64            // tunnels ended by the idle timeout
	CapsuleDatagrams                                                          uint64            // datagrams that arrived in DATAGRAM capsules
	CapsuleErrors                                                             uint64            // malformed or oversize capsules (stream reset)
	DatagramErrors                                                            uint64            // unparsable HTTP/3 datagrams (connection closed)
	ToTarget                                                                  uint64            // UDP datagrams written to targets
	ToTargetBytes                                                             uint64            // ... and their payload bytes
	ToClient                                                                  uint64            // datagrams sent back to clients
	ToClientBytes                                                             uint64            // ... and their payload bytes
	DropMalformed                                                             uint64            // client datagrams without a parsable context ID
	DropUnknownContext                                                        uint64            // client datagrams with a context ID other than 0
	DropOversize                                                              uint64            // datagrams over MaxDatagramPayload or refused as too large, both ways
	DropAmplification                                                         uint64            // client datagrams over their connection's byte budget toward targets
	DropRateLimited                                                           uint64            // client datagrams over their tunnel's or connection's rate toward targets
	DropSendError                                                             uint64            // client datagrams the target socket failed to send
	DropReturnOversize                                                        uint64            // replies too large for the client connection
	DropReturnSendError                                                       uint64            // replies the QUIC connection refused
	DropReturnQueueFull                                                       uint64            // replies dropped because the connection's reply ring was full
	DropReturnClosed                                                          uint64            // replies still queued when their connection ended
	DropReturnBlocked                                                         uint64            // replies dropped because their HTTP/2 or HTTP/1.1 stream was backed up
	DropTeardown                                                              uint64            // datagrams discarded because their tunnel or the proxy was ending
	TargetUnreachable                                                         uint64            // ICMP errors reported by target sockets
	Router                                                                    engine.Stats      // every connection's router, summed (ended ones included)
	DataPath                                                                  DataPathStats     // wake-ups, system calls and batches of the data path

	// By tunnel kind (protocol): tunnels now, and tunnels that got a 2xx.
	TunnelsByProtocol map[string]int64
	OpenedByProtocol  map[string]uint64

	// CONNECT-IP. Packets to the network and to the client are counted in
	// ToTarget and ToClient; these drops are IP tunnels' only.
	DropSource         uint64 // client packets whose source is not the tunnel's address
	DropScope          uint64 // packets outside the tunnel's scope, or link-local
	DropHopLimit       uint64 // packets whose TTL / Hop Limit ran out at the proxy
	IPFromNetwork      uint64 // packets read from the CONNECT-IP device
	IPNoTunnel         uint64 // ... addressed to no tunnel (answered with ICMP)
	IPReturnClosed     uint64 // ... dropped: the tunnel was closing (a full reply ring is DropReturnQueueFull, as for CONNECT-UDP)
	IPNetworkMalformed uint64 // ... that did not parse
	ICMPToClient       uint64 // ICMP errors the proxy sent into tunnels
	ICMPToNetwork      uint64 // ICMP errors the proxy wrote to the network
	IPAddressRequests  uint64 // ADDRESS_REQUEST capsules answered
	IPMTUAborts        uint64 // tunnels aborted: the connection cannot carry 1280-byte packets
	IPAddressesInUse   int    // client addresses assigned now

	// TCP counts CONNECT (TCP) tunnels and their bytes (connecttcp.go).
	TCP TCPStats
	// Bind counts Connect-UDP-Bind tunnels and their contexts
	// (udpbind.go); their datagrams count in ToTarget, ToClient and the
	// drops above, as CONNECT-UDP's do.
	Bind BindStats
}

// Stats returns a snapshot of the proxy's counters, its routers' included.
func (p *Proxy) Stats() Stats {
	c := &p.counters
	st := Stats{
		ConnsAccepted:    c.connsAccepted.Load(),
		ConnsRejected:    c.connsRejected.Load(),
		Tunnels:          p.tunnels.Load(),
		TunnelsOpened:    c.tunnelsOpened.Load(),
		Rejected:         c.rejected.snapshot(),
		AuthRefused:      p.auth.snapshot(),
		TCP:              p.tcp.snapshot(),
		Bind:             p.bind.snapshot(),
		RefusedPolicy:    c.tunnelRefusedPolicy.Load(),
		FailedDNS:        c.tunnelFailDNS.Load(),
		FailedDial:       c.tunnelFailDial.Load(),
		IdleClosed:       c.tunnelIdleClosed.Load(),
		CapsuleDatagrams: c.capsuleDatagrams.Load(),
		CapsuleErrors:    c.capsuleErrors.Load(),
		DatagramErrors:   c.datagramErrors.Load(),
	}
	p.mu.Lock()
	c.folded.addToStats(&st)
	for t := range p.live {
		t.addToStats(&st)
	}
	st.Conns = int64(len(p.conns))
	st.Router = p.foldedRouter
	exec := p.exec
	senderWakeups := c.senderWakeups.Load() // of ended connections; live ones below
	routers := make([]*engine.Router, 0, len(p.conns))
	for pc := range p.conns {
		routers = append(routers, pc.router)
		senderWakeups += pc.sender.wakeups()
	}
	p.mu.Unlock()
	for _, r := range routers {
		st.Router.Add(r.Stats())
	}
	st.DataPath = p.dataPathStats(exec)
	st.DataPath.SenderWakeups = senderWakeups
	st.DataPath.SenderBatches = c.senderBatches.Load()
	st.DataPath.SenderDatagrams = c.senderDatagrams.Load()
	st.DataPath.SenderQueueFull = c.senderQueueFull.Load()
	st.DropMalformed += c.capsuleMalformed.Load() // DATAGRAM capsules refused before they became datagrams
	st.DropOversize += c.capsuleOversize.Load()
	st.TunnelsByProtocol, st.OpenedByProtocol = p.kindCounts()
	if n := p.ip; n != nil {
		st.IPFromNetwork = n.c.fromNetwork.Load()
		st.IPNoTunnel = n.c.noTunnel.Load()
		st.IPReturnClosed = n.c.returnClosed.Load()
		st.IPNetworkMalformed = n.c.networkBad.Load()
		st.ICMPToClient = n.c.icmpToClient.Load()
		st.ICMPToNetwork = n.c.icmpToNetwork.Load()
		st.IPAddressRequests = n.c.addressRequests.Load()
		st.IPMTUAborts = n.c.mtuAborts.Load()
		st.IPAddressesInUse = n.pool4.InUse() + n.pool6.InUse()
	}
	st.AddrRetries = p.counters.limitRetries.Load()
	if l := p.addrs; l != nil {
		st.AddrRefusedRate, st.AddrRefusedConcurrent = l.refusedRate.Load(), l.refusedConcurrent.Load()
		st.AddrRefusedTableFull = l.refusedTable.Load()
		st.AddrRetries += l.retries.Load()
	}
	return st
}

// addRouterStats adds o's counts to s: the proxy's totals over its
// connections' routers. (conn.go's caller can use Stats.Add directly.)
func addRouterStats(s *engine.Stats, o engine.Stats) { s.Add(o) }

// protoCounts count one protocol's tunnels.
type protoCounts struct {
	live   atomic.Int64
	opened atomic.Uint64
}

// kindCounts returns tunnels now and opened, by protocol.
func (p *Proxy) kindCounts() (map[string]int64, map[string]uint64) {
	live, opened := make(map[string]int64), make(map[string]uint64)
	for proto, c := range p.byProto {
		live[proto] = c.live.Load()
		opened[proto] = c.opened.Load()
	}
	return live, opened
}
