// Package ringbuf is a bounded, multi-producer single-consumer ring of
// datagram buffers: the inbox of one session of the router.
//
// # Who calls what
//
// Any number of dispatcher goroutines (one per QUIC connection reader) call
// [Ring.TryPush]. Exactly one goroutine, the session's, consumes: it alone
// may call [Ring.PopBatch], [Ring.Wait], [Ring.Arm], [Ring.Notify],
// [Ring.Disarm] and [Ring.Drain]. [Ring.SetLimit], [Ring.Limit],
// [Ring.Close], [Ring.Closed], [Ring.Len], [Ring.Cap] and [Ring.Stats] may be
// called from anywhere.
// Nothing checks the single-consumer rule at run time; two consumers race on
// the slots and the race detector reports it.
//
// # Wait-free push
//
// TryPush never blocks, never allocates and finishes in a bounded number of
// its own steps whatever the other goroutines do: it is wait-free, not merely
// lock-free. A push is two loads (is there room?), two fetch-and-adds (one to
// reserve room, one to take a ticket naming the slot), a plain write of the
// value, one atomic store that publishes it and one load to see whether the
// consumer is parked; there is no loop. A dropped push is the two loads and
// a counter increment. The obvious alternative, reading the
// tail and compare-and-swapping it forward until the CAS wins, is only
// lock-free: some producer always makes progress, but a given producer can
// lose the CAS to its neighbours over and over, and with many dispatchers on
// many cores the tail latency of a push is unbounded. A fetch-and-add cannot
// lose.
//
// Two caveats. The wait-freedom is that of the hardware's fetch-and-add:
// LOCK XADD on amd64 and LDADDAL on arm64 with LSE atomics are wait-free;
// on a machine that only has LL/SC the add is itself a retry loop. And the
// one producer that takes the empty → non-empty edge while the consumer is
// parked makes one non-blocking channel send to wake it, which inside the
// runtime briefly takes the channel's lock.
//
// # Overflow policy
//
// The ring is bounded by [Ring.Cap] and by a soft limit ([Ring.SetLimit]).
// When it is full, or closed, TryPush drops the newest datagram: it returns
// false, leaves the value with the caller (who should recycle its buffer),
// and counts the drop in [Stats].Dropped. Older, queued datagrams are never
// dropped.
//
// # Ordering contract
//
// A successful TryPush happens before the PopBatch (or Drain) that returns
// the item: everything the producer wrote before TryPush, including the
// contents of the buffer it pushes, is visible to the consumer once PopBatch
// has returned the item. Ownership of the value passes with it: after TryPush
// returns true the producer must not touch the buffer again.
//
// Items from one producer are popped in the order that producer pushed them.
// Items from different producers are popped in the order they took tickets,
// which is a linearization of their TryPush calls.
//
// A consumer that found the ring empty and parked (Wait, or Arm + Notify) is
// woken by the first push that lands after it armed; pushes that find the
// consumer awake do not signal anything. Wake-ups can be spurious: after one,
// PopBatch may return nothing.
//
// The algorithm and its proofs are at the top of ring.go and park.go.
package ringbuf
