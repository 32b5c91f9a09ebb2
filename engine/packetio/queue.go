package packetio

import "sync"

// packetQueue is the bounded FIFO between the goroutines that produce
// packets for the proxy (Responder.WritePackets, the Netstack pump) and the
// one goroutine in ReadPackets.
//
// It is built on two buffered channels of the same capacity, free and ready,
// over a fixed set of slots allocated up front, so the steady state
// allocates nothing.
//
// Invariants:
//   - every slot is in exactly one place: the free channel, the ready
//     channel, or held by exactly one goroutine between the receive that
//     took it and the send that passes it on;
//   - so len(free)+len(ready)+held == len(slots) == cap(free) == cap(ready),
//     and a send to either channel never blocks.
//
// Slot ownership: tryGet passes a free slot to a producer; push passes it to
// the consumer through ready; the consumer copies it out and put returns it
// to free. The channel operations are what order the producer's writes to
// slot.buf before the consumer's reads of it.
//
// Overflow policy: producers never block. When no slot is free the reader
// is len(slots) packets behind; tryGet returns nil and the producer drops
// the packet and counts it.
type packetQueue struct {
	free  chan *slot
	ready chan *slot
	size  int // len(slot.buf) for every slot

	done      chan struct{} // closed by close; ReadPackets then fails
	closeOnce sync.Once
}

type slot struct {
	buf  []byte
	n    int  // packet length in buf; set by the producer before push
	held bool // true between tryGet and put; catches a double put
}

func newPacketQueue(slots, size int) *packetQueue {
	q := &packetQueue{
		free:  make(chan *slot, slots),
		ready: make(chan *slot, slots),
		size:  size,
		done:  make(chan struct{}),
	}
	backing := make([]byte, slots*size)
	for i := range slots {
		q.free <- &slot{buf: backing[i*size : (i+1)*size : (i+1)*size]}
	}
	return q
}

// tryGet takes a free slot, or returns nil when every slot is queued or held.
func (q *packetQueue) tryGet() *slot {
	select {
	case s := <-q.free:
		s.held = true
		return s
	default:
		return nil
	}
}

// push hands s, holding s.buf[:s.n], to the reader. It never blocks.
func (q *packetQueue) push(s *slot) {
	q.ready <- s // publishes s.buf[:s.n] to the reader
}

// put returns a slot taken by tryGet or read to the free list.
func (q *packetQueue) put(s *slot) {
	if !s.held {
		panic("packetio: slot released twice")
	}
	s.held = false
	s.n = 0
	q.free <- s
}

// read is ReadPackets for the queue-backed backends; see Device.
func (q *packetQueue) read(bufs [][]byte, sizes []int) (int, error) {
	// Check done first: once Close has returned, no call may still receive
	// a queued packet, which a select over both channels could.
	select {
	case <-q.done:
		return 0, errClosed
	default:
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	if err := checkReadBufs(bufs, sizes, q.size); err != nil {
		return 0, err
	}
	var s *slot
	select {
	case s = <-q.ready:
	case <-q.done:
		return 0, errClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n], s.buf[:s.n])
		n++
		q.put(s)
		if n == len(bufs) {
			return n, nil
		}
		select {
		case s = <-q.ready:
		default:
			return n, nil
		}
	}
}

// close makes read fail with errClosed, now and later. Producers may keep
// pushing; their packets are never read.
func (q *packetQueue) close() {
	q.closeOnce.Do(func() { close(q.done) })
}
