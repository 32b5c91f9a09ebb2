package ringbuf

// Scheduled consumers.
//
// A ring with a Waker has no consumer goroutine parked on it. Its consumer is
// a task that some scheduler runs when there is work, and "parked" means "not
// scheduled": nobody is going to pop until a producer hands the ring back to
// the scheduler. The edge protocol is park.go's, with the token send replaced
// by a call to Waker.Wake:
//
//	consumer, Park                       producer, after publishing ticket t
//	  parked.Store(true)                   seq[t].Store(t+1)
//	  if seq[head].Load() == head+1 ||     if parked.Load() &&
//	     limit.Load() == closedLimit {        parked.CompareAndSwap(true, false) {
//	      if parked.CAS(true, false) {         Wake()
//	          return false // keep going    }
//	      }
//	      return true // a producer took it
//	  }
//	  return true // parked
//
// Close does what a producer does, after its store of closedLimit.
//
// Invariant: for each parked.Store(true) exactly one CAS to false succeeds
// (the consumer's own in Park, or one producer's, or Close's), so each park
// leads to exactly one continuation: Park returning false, or one Wake call.
// That is what lets a scheduler keep its tasks on intrusive lists: a task is
// never scheduled twice at once. Unlike park.go's tokens, there are no stale
// wake-ups to absorb: a producer that loads parked == true and stalls either
// wins a CAS of some later park (and that Wake is that park's one
// continuation; the ring may be empty by then, which costs the scheduler one
// empty turn) or loses it.
//
// No wake-up is lost, by park.go's argument: if Park's load of seq[head]
// missed the publish of ticket head, the producer's load of parked comes
// after Park's store of true, and one CAS wins.

// A Waker is told that a parked ring's consumer must run again: an item
// arrived, or the ring was closed. Wake is called from the producer's
// goroutine (inside TryPush) or from Close's, at most once per Park that
// returned true. It must not block and must not call back into the ring's
// consumer methods.
type Waker interface {
	Wake()
}

// SetWaker makes the ring's consumer a scheduled task: the consumer parks
// with Park instead of Arm or Wait, and w.Wake is called on the edge that
// ends a park. SetWaker must be called before the ring is shared; Arm,
// Notify, Disarm and Wait must not be used on the ring afterwards.
//
// A ring starts unparked, so whoever sets the waker owes the consumer its
// first run (or a Park).
func (r *Ring[T]) SetWaker(w Waker) {
	r.waker = w
	r.wake = nil // unused from now on
}

// Park announces that the consumer stops running. It returns true when the
// consumer is parked: Wake will be called exactly once, when an item arrives
// or the ring is closed (possibly at once, from another goroutine, before
// Park returns). It returns false when the consumer must keep running: the
// oldest item is ready to pop, or the ring is closed, and no Wake is coming.
//
// Park must only be called by the single consumer, on a ring with a Waker.
func (r *Ring[T]) Park() bool {
	r.prod.parked.Store(true) // announce before checking; pairs with the load after publish
	h := r.cons.head.Load()
	if r.slots[h&r.mask].seq.Load() == h+1 || r.limit.Load() == closedLimit {
		// Work is here. Take the continuation back, unless a producer or
		// Close took it first: then their Wake is the continuation.
		return !r.prod.parked.CompareAndSwap(true, false)
	}
	return true
}
