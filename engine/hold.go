package engine

import (
	"time"

	"github.com/masqroute/masqroute/ringbuf"
)

// HoldOptions configure the hold queue: datagrams for a stream the router
// does not know yet are kept briefly, in case the request that opens the
// stream is still on its way (QUIC does not order datagrams after stream
// data, so a client's first datagram can overtake its CONNECT request).
//
// The queue is bounded twice: at most Max datagrams wait in it, and each
// waits at most Timeout. Its overflow policy is the router's everywhere:
// a datagram that finds the queue full is the one dropped (the newest; what
// is held stays), counted as DroppedUnknown. Whatever is not claimed in time
// is dropped and counted as DroppedUnknown too; one whose session appears
// but whose ring refuses it is counted as DroppedHeldRefused.
type HoldOptions struct {
	// Max is the most datagrams held at once per router. 0 disables
	// holding: datagrams for unknown streams are dropped at once.
	Max int
	// Timeout is how long a datagram is held: about a round trip.
	// Default DefaultHoldTimeout.
	Timeout time.Duration
}

// DefaultHoldTimeout is HoldOptions.Timeout when left zero.
const DefaultHoldTimeout = 100 * time.Millisecond

func (o HoldOptions) enabled() bool { return o.Max > 0 }

func (o HoldOptions) withDefaults() HoldOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultHoldTimeout
	}
	return o
}

type heldDatagram struct {
	id uint64
	d  []byte
	at time.Time // when the control plane took it from the ring
}

// holdQueue has two stages. Dispatchers push into ring (wait-free, like any
// session ring); the control plane, its single consumer, moves what arrives
// into list, stamped with the time, and matches list against sessions as they
// are created. list is owned by the control-plane goroutine.
//
// The two stages share one bound, Max: the control plane keeps the ring's
// limit at Max − len(list) (ctlArmHold), so a push fails, and the newest
// datagram is dropped, once Max datagrams are held in the two together.
// A push that raced with a lowered limit can still bring one more into the
// ring; ctlCollectHeld then drops it, the newest again, so list never holds
// more than Max and both stages drop the same end.
type holdQueue struct {
	opts HoldOptions
	ring *ringbuf.Ring[heldDatagram] // limit: opts.Max − len(list)
	list []heldDatagram              // oldest first; len ≤ opts.Max
}

func newHoldQueue(opts HoldOptions) *holdQueue {
	q := &holdQueue{
		opts: opts,
		ring: ringbuf.New[heldDatagram](opts.Max), // capacity rounded up to a power of two
		list: make([]heldDatagram, 0, opts.Max),
	}
	q.ring.SetLimit(opts.Max) // the list is empty: the whole bound is the ring's
	return q
}

// tryHold is called by dispatchers. It reports false when the ring is full.
func (q *holdQueue) tryHold(id uint64, d []byte) bool {
	return q.ring.TryPush(heldDatagram{id: id, d: d})
}

func (q *holdQueue) notify() <-chan struct{} { return q.ring.Notify() }
func (q *holdQueue) disarm()                 { q.ring.Disarm() }

// ctlArmHold collects newly held datagrams, expires old ones, arms the
// ring's wake-up and returns the channel of a timer that fires when the
// oldest held datagram expires (nil when nothing is held).
func (r *Router) ctlArmHold(timer *time.Timer) <-chan time.Time {
	q := r.hold
	for {
		r.ctlCollectHeld()
		if !q.ring.Arm() {
			q.ring.Disarm()
			continue // something arrived meanwhile
		}
		break
	}
	now := time.Now()
	r.ctlExpireHeld(now)
	q.ring.SetLimit(q.opts.Max - len(q.list)) // the room left under the shared bound
	if len(q.list) == 0 {
		timer.Stop()
		return nil
	}
	timer.Reset(q.list[0].at.Add(q.opts.Timeout).Sub(now))
	return timer.C
}

// ctlCollectHeld moves datagrams from the ring to the list, handing over
// at once those whose session appeared while they were in flight.
func (r *Router) ctlCollectHeld() {
	q := r.hold
	var buf [16]heldDatagram
	now := time.Now()
	for {
		n := q.ring.PopBatch(buf[:])
		if n == 0 {
			return
		}
		for _, h := range buf[:n] {
			if s := r.sessions.Load(h.id); s != nil {
				r.ctlHandOver(s, h.d)
				continue
			}
			if len(q.list) == q.opts.Max {
				r.ctlDropHeld(h) // over the bound: the newest goes, as in the ring
				continue
			}
			h.at = now
			q.list = append(q.list, h)
		}
		clear(buf[:n])
	}
}

func (r *Router) ctlExpireHeld(now time.Time) {
	q := r.hold
	i := 0
	for i < len(q.list) && now.Sub(q.list[i].at) >= q.opts.Timeout {
		r.ctlDropHeld(q.list[i])
		i++
	}
	if i > 0 {
		n := copy(q.list, q.list[i:])
		clear(q.list[n:])
		q.list = q.list[:n]
	}
}

// ctlReleaseHeld hands s the datagrams held for its stream, oldest first.
// It runs before s is published, so they precede every datagram dispatched
// to s directly, except one in flight at the moment of publication.
func (r *Router) ctlReleaseHeld(s *Session) {
	q := r.hold
	r.ctlCollectHeld()
	kept := q.list[:0]
	for _, h := range q.list {
		if h.id == s.id {
			r.ctlHandOver(s, h.d)
			continue
		}
		kept = append(kept, h)
	}
	clear(q.list[len(kept):])
	q.list = kept
}

// ctlHandOver pushes a held datagram into its session's ring; one the ring
// refuses (full, or past a pending session's limit) is dropped as
// DroppedHeldRefused: its session existed, so it is not DroppedUnknown.
func (r *Router) ctlHandOver(s *Session, d []byte) {
	if s.ring.TryPush(d) {
		r.counters.heldDelivered.Add(1)
		return
	}
	r.counters.heldRefused.Add(1)
	r.release(d)
}

func (r *Router) ctlDropHeld(h heldDatagram) {
	r.counters.heldDropped.Add(1)
	r.release(h.d)
}

// ctlDropAllHeld empties the hold queue at shutdown.
func (r *Router) ctlDropAllHeld() {
	q := r.hold
	q.ring.Close()
	q.ring.Drain(func(h heldDatagram) { r.ctlDropHeld(h) })
	for _, h := range q.list {
		r.ctlDropHeld(h)
	}
	clear(q.list)
	q.list = q.list[:0]
}
