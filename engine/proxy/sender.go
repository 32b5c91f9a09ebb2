package proxy

import (
	"errors"

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
// Why a goroutine per connection: quic-go's SendDatagram blocks once 32
// DATAGRAM frames are queued on the connection, takes no context and shows
// no queue length, and a capsule write blocks on the stream's flow control.
// Only the sender makes those calls, so a slow client stalls its own sender
// and nothing else: its ring fills and further replies are dropped and
// counted (queue_full), while the pollers and the executor's workers, which
// serve every connection, never wait. The sender wakes once per batch, not
// once per reply: replies pushed while it is busy cost no wake-up.
//
// The ring is bounded (senderQueueLen) and drops the newest reply when
// full, like every queue on the datagram path.

// senderQueueLen is a connection's reply ring: room for a burst from every
// tunnel of a busy connection while quic-go's own 32-datagram queue drains.
// 48 bytes a slot, 24 KiB a connection.
const senderQueueLen = 512

// senderBatch is the most replies the sender pops at once.
const senderBatch = 64

// A reply is one HTTP Datagram on its way to the client.
type reply struct {
	frame []byte // quarter stream ID, context ID, payload
	src   replySource
	buf   *udpio.Buffer // frame's storage; the source frees it
	qlen  uint8         // length of the quarter stream ID at frame's start
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
	full := b.Frame(udpio.Headroom, n)
	start := wire.PutDatagramHeader(full, udpio.Headroom, streamID, 0)
	return reply{
		frame: full[start:],
		src:   src,
		buf:   b,
		qlen:  uint8(quicvarint.Len(streamID / 4)),
		n:     uint32(n),
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
		err = req.WriteCapsule(wire.CapsuleDatagram, r.frame[r.qlen:])
	}
	r.src.replied(r, err)
}

// wakeups is the number of times a push woke the parked sender so far.
func (s *sender) wakeups() uint64 { return s.ring.Stats().Wakeups }
