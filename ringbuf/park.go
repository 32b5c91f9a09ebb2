package ringbuf

// Parking the consumer.
//
// The consumer parks only when it has found the ring empty, and the first
// push to land after that wakes it: wake-ups happen on the empty → non-empty
// edge only. While the consumer is awake a push pays one plain atomic load
// of parked, on a line nobody writes while the consumer is busy.
//
// Protocol (Dekker's pattern on sequentially consistent atomics):
//
//	consumer, Arm                        producer, after publishing ticket t
//	  drain a stale token from wake        seq[t].Store(t+1)
//	  parked.Store(true)                   if parked.Load() &&
//	  if seq[head].Load() == head+1 {         parked.CompareAndSwap(true, false) {
//	      parked.Store(false)                  wakeups++
//	      return false  // don't park          non-blocking send on wake
//	  }                                    }
//	  return true       // block on wake
//
// Invariant: only the consumer sets parked, so for each parked.Store(true)
// at most one producer's CAS succeeds, and only that producer sends a token.
// Losing producers do nothing more: the winner's token is enough, and
// retrying would put a loop in the push.
//
// No wake-up is lost. Suppose Arm returned true: its load L of seq[head]
// missed the publish W of ticket head, so W comes after L, which comes after
// the store of parked = true. The producer of ticket head loads parked
// after W. If it sees true, it CASes; if it wins it sends a token, if it
// loses another producer won and sent one. If it sees false, someone stored
// false after Arm's store: a producer that won and sent a token, or the
// consumer, which is then not parked. A token sent after Arm's drain is
// received by the consumer, and a send that finds the channel full leaves the
// token already there, which the consumer receives. (Items published at
// tickets after head do not matter: the consumer can pop nothing until
// ticket head is published, and that publish does the above.)
//
// Stale tokens are harmless. A producer can win the CAS for an earlier
// episode and send after the consumer woke by other means (Disarm), or load
// parked == true, stall, and win the CAS of a later episode after the item
// it published has long been popped. Either way the consumer gets one
// spurious wake-up, finds nothing (or something), and parks again. Arm
// drains a leftover token before announcing, so the usual leftover costs
// nothing; one still in flight costs one spurious wake-up, after which the
// consumer is still armed, which is why it calls Disarm after every wake-up.

// Arm announces that the consumer is about to park and reports whether it
// should. It returns false, and leaves the consumer unarmed, if the oldest
// item is ready to pop or the ring is closed. After Arm returns true the consumer blocks on Notify
// (and whatever else it waits for) and calls Disarm once it is awake. Popping
// while armed is safe but earns a needless token.
//
// Arm must only be called by the single consumer.
func (r *Ring[T]) Arm() bool {
	// Drop a token left from an earlier episode, so it doesn't end this
	// park at once. Only the consumer receives from wake, so no other
	// goroutine's wake-up is lost by this.
	select {
	case <-r.wake:
	default:
	}
	r.prod.parked.Store(true) // announce before checking; pairs with the load after publish in TryPush
	h := r.cons.head.Load()
	// A closed ring is never parked on: Close sends its token after its
	// store, so either this load sees the close or the token comes later.
	if r.slots[h&r.mask].seq.Load() == h+1 || r.limit.Load() == closedLimit {
		// Not parking after all. A producer may have won the CAS already;
		// its token becomes a stale one.
		r.prod.parked.Store(false) // unannounce: pushes stop at the load again
		return false
	}
	return true
}

// Notify returns the channel on which an armed consumer is woken: it receives
// a token on the first push after Arm returned true. Tokens can be spurious.
// After waking, by Notify or otherwise, the consumer calls Disarm: the token
// may be a stale one that left it armed, and when a producer has already
// disarmed it Disarm is only a load.
//
// Notify is for the single consumer, which selects on it alongside its own
// timers and channels:
//
//	if r.Arm() {
//		select {
//		case <-r.Notify():
//		case <-timer.C:
//		}
//		r.Disarm()
//	}
func (r *Ring[T]) Notify() <-chan struct{} { return r.wake }

// Disarm withdraws the consumer's announcement after it woke, by a token on
// Notify or by other means (a timer, a done channel). It is idempotent.
//
// Disarm must only be called by the single consumer.
func (r *Ring[T]) Disarm() {
	// Usually a producer has cleared parked already; don't write the line
	// every producer reads unless we must.
	if r.prod.parked.Load() {
		r.prod.parked.Store(false) // the consumer is awake: pushes stop at the load again
	}
}

// wakeSlow tries, once, to take the wake-up of the parked consumer. It is
// kept out of line so that TryPush stays within the inliner's budget (its
// //gcassert:inline is checked by engine/internal/gcassert).
//
//go:noinline
func (r *Ring[T]) wakeSlow() {
	// Losing the CAS means another producer (or the consumer itself) took
	// the edge already; don't retry.
	if r.prod.parked.CompareAndSwap(true, false) {
		r.prod.wakeups.Add(1)
		if r.waker != nil {
			r.waker.Wake() // the consumer is not running: have it scheduled
			return
		}
		select {
		case r.wake <- struct{}{}: // hand the consumer its token
		default: // a token is already waiting; the consumer will wake on it
		}
	}
}

// Wait parks the consumer until the ring may be non-empty or done is closed.
// It returns true when the consumer should try PopBatch (the wake-up may be
// spurious) and false when done is closed. It returns at once when the oldest
// item is already ready. A nil done waits for items only.
//
// Wait must only be called by the single consumer.
func (r *Ring[T]) Wait(done <-chan struct{}) bool {
	if !r.Arm() {
		// Check done even though there is work: a consumer that is never
		// out of work would otherwise never see it.
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	if done == nil {
		<-r.wake   // a plain receive is cheaper than a select
		r.Disarm() // the token may be stale and have left us armed
		return true
	}
	select {
	case <-r.wake:
		r.Disarm() // the token may be stale and have left us armed
		return true
	case <-done:
		r.Disarm()
		return false
	}
}
