package proxy

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine"

	"github.com/masqroute/masqroute/engine/internal/udpio"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/ringbuf"
)

// The outbound sender: replies from targets to one client connection.
//
//	readers (the pollers, for every tunnel)     the connection's sender (one goroutine)
//	  read a batch from a target socket           pop up to senderBatch replies
//	  write the HTTP Datagram header in front     SendDatagram each (or a DATAGRAM capsule)
//	  push onto the connection's reply ring       hand each back to its tunnel: count, free
//	  (full: drop the newest, count it)           park only when the ring is empty
//
// CONNECT-IP uses the same ring and sender: the device reader checks each
// packet from the network for its tunnel, writes the header into the
// buffer's headroom and pushes it here; a CONNECT-IP tunnel's own ICMP
// errors into the tunnel and its MTU probe come this way too, from the
// executor worker and the request goroutine. No goroutine belongs to a
// tunnel of either kind.
//
// Why a goroutine per connection: quic-go's SendDatagram blocks once 32
// DATAGRAM frames are queued on the connection, takes no context and shows
// no queue length, and a capsule write blocks on the stream's flow control.
// Only the sender makes those calls, so a slow client stalls its own sender
// and nothing else: its ring fills and further replies are dropped and
// counted (return_queue_full), while the pollers, the CONNECT-IP device
// reader and the executor's workers, which serve every connection, never
// wait. The sender wakes once per batch, not
// once per reply: replies pushed while it is busy cost no wake-up.
//
// The ring is bounded (senderQueueLen) and drops the newest reply when
// full, like every queue on the datagram path.

// senderQueueLen is a connection's reply ring: room for a burst from every
// tunnel of a busy connection while quic-go's own 32-datagram queue drains.
// A reply is 64 bytes, a slot 72 with its sequence number: 36 KiB a
// connection.
const senderQueueLen = 512

// senderBatch is the most replies the sender pops at once.
const senderBatch = 64

// A reply is one HTTP Datagram on its way to the client. Its storage is a
// pooled buffer of its source's: buf for a CONNECT-UDP reply, ip for a
// CONNECT-IP one (one of the two is nil); the source frees it in replied.
type reply struct {
	frame []byte // quarter stream ID, context ID, payload
	src   replySource
	buf   *udpio.Buffer // CONNECT-UDP: frame's storage
	ip    *ipBuf        // CONNECT-IP: frame's storage
	qlen  uint8         // length of the quarter stream ID at frame's start
	tag   uint8         // the source's own: what kind of reply this is
	n     uint32        // payload bytes, for the counters
}

// A replySource is a tunnel whose replies go through the sender.
type replySource interface {
	// request is the tunnel's request: its stream carries replies as
	// DATAGRAM capsules when the connection has no QUIC datagrams.
	request() *Request
	// replied is told the outcome of one of its replies, on the sender's
	// goroutine: nil (sent), the send's error, or errSenderClosed. It
	// counts it and frees the reply's buffer. It must not block.
	replied(r *reply, err error)
}

// errSenderClosed: the connection ended with the reply still queued.
var errSenderClosed = errors.New("masqroute: connection ended with the reply queued")

// sender is a connection's reply ring and the goroutine that drains it.
type sender struct {
	out    engine.DatagramSender // the connection: SendDatagram
	ctr    *proxyCounters
	ring   ringbuf.Ring[reply]
	stop   chan struct{} // closed by close: drain and exit
	exited chan struct{} // closed by routineSend on exit
}

func newSender(out engine.DatagramSender, ctr *proxyCounters) *sender {
	s := &sender{out: out, ctr: ctr, stop: make(chan struct{}), exited: make(chan struct{})}
	s.ring.Init(senderQueueLen)
	go s.routineSend()
	return s
}

// newReply frames payload bytes [udpio.Headroom, udpio.Headroom+n) of b as
// an HTTP Datagram of stream streamID with context ID 0, writing the header
// into b's headroom.
func newReply(src replySource, b *udpio.Buffer, n int, streamID uint64) reply {
	r := frameReply(src, b.Frame(udpio.Headroom, n), udpio.Headroom, streamID, 0)
	r.buf = b
	return r
}

// newIPReply frames b's packet as an HTTP Datagram of stream streamID with
// the given context ID, writing the header into b's headroom.
func newIPReply(src replySource, b *ipBuf, streamID, contextID uint64, tag uint8) reply {
	r := frameReply(src, b.data[:ipHeadroom+b.n], ipHeadroom, streamID, contextID)
	r.ip, r.tag = b, tag
	return r
}

// frameReply writes the HTTP Datagram header in front of full[off:], the
// payload, and returns the reply that sends it.
func frameReply(src replySource, full []byte, off int, streamID, contextID uint64) reply {
	start := wire.PutDatagramHeader(full, off, streamID, contextID)
	return reply{
		frame: full[start:],
		src:   src,
		qlen:  uint8(quicvarint.Len(streamID / 4)),
		n:     uint32(len(full) - off),
	}
}

// enqueue queues r for the client. It is wait-free and may be called by any
// goroutine. On false the ring was full (or the connection has ended): r is
// the caller's again and the drop is counted as queue_full here; the caller
// counts it for its tunnel and frees r.buf.
func (s *sender) enqueue(r reply) bool {
	if s.ring.TryPush(r) {
		return true
	}
	s.ctr.senderQueueFull.Add(1)
	return false
}

// close stops the sender once nothing can enqueue any more (every tunnel of
// the connection has closed) and waits for it. What is still queued is
// handed back with errSenderClosed.
func (s *sender) close() {
	close(s.stop)
	<-s.exited
}

// routineSend is the body of a connection's sender goroutine.
func (s *sender) routineSend() {
	defer close(s.exited)
	ctr := s.ctr
	batch := make([]reply, senderBatch)
	for {
		n := s.ring.PopBatch(batch)
		if n == 0 {
			if !s.ring.Wait(s.stop) {
				break
			}
			continue
		}
		ctr.senderBatches.Add(1)
		ctr.senderDatagrams.Add(uint64(n))
		for i := range batch[:n] {
			s.send(&batch[i])
			batch[i] = reply{}
		}
	}
	s.ring.Close()
	s.ring.Drain(func(r reply) { r.src.replied(&r, errSenderClosed) })
}

// send sends one reply: a QUIC datagram, or a DATAGRAM capsule on the
// request stream when the client takes no datagrams (RFC 9297 §3.5).
func (s *sender) send(r *reply) {
	var err error
	if req := r.src.request(); req.datagrams {
		err = s.out.SendDatagram(r.frame) // quic-go copies the frame
	} else {
		err = req.writeDatagram(r.frame[r.qlen:])
	}
	r.src.replied(r, err)
}

// wakeups is the number of times a push woke the parked sender so far.
func (s *sender) wakeups() uint64 { return s.ring.Stats().Wakeups }

// A replyBook keeps a tunnel's counters and the number of its replies that
// are with the connection's sender (or on their way to it). The counters
// fold into the proxy's totals exactly once, when the tunnel has closed and
// its last reply has come back through replied: not before (that reply's
// outcome would be lost), not twice. CONNECT-UDP and CONNECT-IP tunnels
// embed one.
//
// Whoever counts on c on the return path holds a place first (hold) and
// gives it back (settled) after its last count, or passes it on to the
// reply it queues (send), which the tunnel's replied gives back.
type replyBook struct {
	c        tunnelCounters
	totals   *Proxy       // folds c into its totals
	inflight atomic.Int64 // places held: replies with the sender, packets being checked
	closed   atomic.Bool  // closeBook has run; the last place given back folds c
	foldOnce sync.Once
}

// openBook adds the tunnel's counters to p's live set.
func (b *replyBook) openBook(p *Proxy) {
	b.totals = p
	p.trackTunnel(&b.c, true)
}

// hold takes a place for one reply. It reports false, having taken
// nothing, when the tunnel has closed: its counters may have folded
// already, so nothing may count on them any more.
func (b *replyBook) hold() bool {
	// Dekker with closeBook: we add, then load closed; closeBook stores
	// closed, then loads inflight. One of the two sees the other.
	b.inflight.Add(1)
	if b.closed.Load() {
		b.settled()
		return false
	}
	return true
}

// settled gives a place back; the last one of a closed tunnel folds its
// counters.
func (b *replyBook) settled() {
	if b.inflight.Add(-1) == 0 && b.closed.Load() {
		b.fold()
	}
}

// send queues r, for which the caller holds a place, on snd; the place goes
// with r. On false the ring was full: the drop is counted on full (when not
// nil), the place given back, and r's buffer is the caller's to free.
func (b *replyBook) send(snd *sender, r reply, full *atomic.Uint64) bool {
	if snd.enqueue(r) {
		return true
	}
	if full != nil {
		full.Add(1)
	}
	b.settled()
	return false
}

// countReply counts the outcome of one reply carrying a datagram of the
// tunnel's traffic: sent; or dropped because the connection ended with it
// queued (return_closed), because it outlived its tunnel and the request
// stream or the connection refused it (teardown), or because the
// connection refused it otherwise (return_oversize, return_send_error).
func (b *replyBook) countReply(r *reply, err error) {
	switch {
	case err == nil:
		b.c.toClient.Add(1)
		b.c.toClientBytes.Add(uint64(r.n))
	case err == errSenderClosed:
		b.c.dropReturnClosed.Add(1)
	case b.closed.Load():
		b.c.dropTeardown.Add(1)
	default:
		b.c.countReturnError(err)
	}
}

// closeBook marks the tunnel closed: from now on hold refuses, and the last
// place given back folds the counters (now, if none is held).
func (b *replyBook) closeBook() {
	b.closed.Store(true) // then load inflight: see hold
	if b.inflight.Load() == 0 {
		b.fold()
	}
}

// fold moves the tunnel's counters into the proxy's totals, once.
func (b *replyBook) fold() {
	b.foldOnce.Do(func() { b.totals.trackTunnel(&b.c, false) })
}
