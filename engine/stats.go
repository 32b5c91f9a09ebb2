package engine

import "sync/atomic"

// counters are a router's totals. None is touched on Dispatch's fast path
// (a successful push): accepted datagrams are counted by the rings
// themselves and folded in here when a session is torn down. Drop counters
// are touched on the slow path only.
type counters struct {
	// data plane, slow path
	unknownDirect  atomic.Uint64 // no session and not held
	pendingRefused atomic.Uint64 // pending buffer full
	ringRefused    atomic.Uint64 // ring full
	closedRefused  atomic.Uint64 // session ended before the push
	discarded      atomic.Uint64 // in a ring when its session ended
	held           atomic.Uint64 // entered the hold queue
	heldDelivered  atomic.Uint64 // left it into their session's ring
	heldDropped    atomic.Uint64 // left it unclaimed: expired, overflow, Close
	heldRefused    atomic.Uint64 // left it for their session, whose ring refused them

	// folded from torn-down sessions
	foldedPushed    atomic.Uint64
	foldedDelivered atomic.Uint64

	// control plane
	started        atomic.Uint64
	registered     atomic.Uint64
	activated      atomic.Uint64
	failed         atomic.Uint64
	cancelled      atomic.Uint64
	closed         atomic.Uint64
	rejectedLimit  atomic.Uint64
	rejectedExists atomic.Uint64
	rejectedKind   atomic.Uint64
	pending        atomic.Int64
	active         atomic.Int64
}

// Stats is a snapshot of a router's counters.
//
// Every dispatched datagram ends up in exactly one of Delivered, Queued,
// HeldNow or a Dropped reason. Once the router is quiescent (no Dispatch
// running, no session mid-teardown):
//
//	Dispatched == Delivered + Queued + HeldNow + Dropped()
//
// Dispatched is not a counter of its own (that would cost the fast path an
// atomic add); it is summed from the rings' push counts and the slow-path
// counters, so a caller that counts its own Dispatch calls can check the
// identity. While datagrams flow, each field is accurate on its own but they
// are not read at one instant.
type Stats struct {
	// Datagrams.
	Dispatched             uint64 // Dispatch calls
	Delivered              uint64 // handed to a Handler or popped by a pull-mode owner
	Queued                 uint64 // in session rings now
	HeldNow                uint64 // in the hold queue now
	DroppedUnknown         uint64 // no session for the stream (after the hold, if enabled)
	DroppedPendingOverflow uint64 // session still starting, pending buffer full
	DroppedRingFull        uint64 // session's ring full: its consumer is behind
	DroppedClosed          uint64 // session ended, cancelled or failed with it queued or in flight
	DroppedHeldRefused     uint64 // held, then refused by its session's ring on handover (full, or past the pending limit)
	Held                   uint64 // entered the hold queue
	HeldDelivered          uint64 // left the hold queue for their session

	// Sessions.
	Pending        int64  // now
	Active         int64  // now
	Started        uint64 // StartSession calls admitted
	Registered     uint64 // Register calls admitted
	Activated      uint64 // inits that succeeded
	Failed         uint64 // inits that failed (error, panic, timeout)
	Cancelled      uint64 // pending sessions cancelled (CancelPending, reset, Close, starter timeout)
	Closed         uint64 // active sessions ended
	RejectedLimit  uint64 // refused: MaxTunnels
	RejectedExists uint64 // refused: stream already routed
	RejectedKind   uint64 // refused: no kind for the protocol
}

// Dropped is the sum of every drop reason.
func (s Stats) Dropped() uint64 {
	return s.DroppedUnknown + s.DroppedPendingOverflow + s.DroppedRingFull + s.DroppedClosed + s.DroppedHeldRefused
}

// Add adds o's counts to s, field by field: the totals of several routers
// (a proxy sums its connections'). The identity above holds for the sum of
// quiescent routers.
func (s *Stats) Add(o Stats) {
	s.Dispatched += o.Dispatched
	s.Delivered += o.Delivered
	s.Queued += o.Queued
	s.HeldNow += o.HeldNow
	s.DroppedUnknown += o.DroppedUnknown
	s.DroppedPendingOverflow += o.DroppedPendingOverflow
	s.DroppedRingFull += o.DroppedRingFull
	s.DroppedClosed += o.DroppedClosed
	s.DroppedHeldRefused += o.DroppedHeldRefused
	s.Held += o.Held
	s.HeldDelivered += o.HeldDelivered
	s.Pending += o.Pending
	s.Active += o.Active
	s.Started += o.Started
	s.Registered += o.Registered
	s.Activated += o.Activated
	s.Failed += o.Failed
	s.Cancelled += o.Cancelled
	s.Closed += o.Closed
	s.RejectedLimit += o.RejectedLimit
	s.RejectedExists += o.RejectedExists
	s.RejectedKind += o.RejectedKind
}

// Stats returns a snapshot of the router's counters. It walks the live
// sessions, so its cost grows with their number; it never blocks Dispatch.
func (r *Router) Stats() Stats {
	c := &r.counters
	heldDropped := c.heldDropped.Load()
	heldRefused := c.heldRefused.Load()
	closedRefused := c.closedRefused.Load()
	st := Stats{
		DroppedUnknown:         c.unknownDirect.Load() + heldDropped,
		DroppedPendingOverflow: c.pendingRefused.Load(),
		DroppedRingFull:        c.ringRefused.Load(),
		DroppedClosed:          closedRefused + c.discarded.Load(),
		DroppedHeldRefused:     heldRefused,
		Held:                   c.held.Load(),
		HeldDelivered:          c.heldDelivered.Load(),
		Pending:                c.pending.Load(),
		Active:                 c.active.Load(),
		Started:                c.started.Load(),
		Registered:             c.registered.Load(),
		Activated:              c.activated.Load(),
		Failed:                 c.failed.Load(),
		Cancelled:              c.cancelled.Load(),
		Closed:                 c.closed.Load(),
		RejectedLimit:          c.rejectedLimit.Load(),
		RejectedExists:         c.rejectedExists.Load(),
		RejectedKind:           c.rejectedKind.Load(),
	}
	pushed := c.foldedPushed.Load()
	st.Delivered = c.foldedDelivered.Load()
	r.sessions.Range(func(_ uint64, s *Session) bool {
		// A session in a terminal state is folded into the totals, or
		// about to be; counting it here too could count it twice.
		if s.state.load().Terminal() {
			return true
		}
		pushed += s.ring.Stats().Pushed
		st.Delivered += s.delivered.Load()
		st.Queued += uint64(s.ring.Len())
		return true
	})
	st.HeldNow = st.Held - st.HeldDelivered - heldDropped - heldRefused
	// A dispatched datagram was pushed into a ring at once, held, or
	// refused on the spot. Held ones that reached their session were
	// pushed later and are in pushed already.
	st.Dispatched = pushed - st.HeldDelivered + st.Held +
		c.unknownDirect.Load() + st.DroppedPendingOverflow + st.DroppedRingFull + closedRefused
	return st
}
