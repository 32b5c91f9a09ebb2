package ringbuf

// The ring is a bounded multi-producer single-consumer queue in the style of
// Dmitry Vyukov's bounded MPMC queue (a sequence number per slot says whose
// turn it is), with two changes: producers take a slot with a fetch-and-add
// ticket instead of a CAS on the tail, and a separate fetch-and-add
// reservation counter keeps tickets from running more than a lap ahead of the
// consumer, which the CAS version checks slot by slot instead.
//
// State (all atomic except the slots' values):
//
//	slots[i].seq  per-slot sequence number, initially i; written by producers only
//	count         reservations not yet given back: successful pushes not yet
//	              popped, plus failed reservations not yet undone
//	tail          next ticket; also the number of successful pushes
//	head          next ticket to pop; written only by the consumer
//	limit         soft capacity in [0, cap], or closedLimit after Close
//
// Ticket t lives in slot t&mask on lap t/cap.
//
// Invariants:
//
//  1. A slot's seq is t+1 from the publish of ticket t's value until the
//     publish of ticket t+cap's (initially i, for slot i). It only grows.
//     Only producers write it: the consumer hands a slot back through
//     count alone.
//  2. head <= tail. Tickets in [head, tail) are taken and not yet popped;
//     some of them may not be published yet.
//  3. A reservation succeeds only if count, just after its own add, is
//     <= limit <= cap; so at every successful reservation, (successful
//     reservations) − (popped items given back to count) <= cap.
//  4. The consumer gives a popped item back to count only after it has
//     copied it out of its slot and cleared the slot.
//
// Slot ownership:
//
//   - seq == t+1, t >= head: the slot belongs to the consumer. PopBatch
//     copies val out, clears it, and hands the slot to ticket t+cap by
//     giving t back to count (invariant 4).
//   - otherwise, from the give-back of ticket t−cap (or from New, on the
//     first lap) the slot belongs to the producer holding ticket t, or to
//     nobody until some producer takes it. That producer writes val and
//     hands the slot to the consumer with seq.Store(t+1). (seq is still
//     t+1−cap then, or t on the first lap: never t+1, so the consumer
//     cannot mistake the old lap's publish for the new one's.)
//
// Memory ordering. Go's atomics are sequentially consistent, and an atomic
// store synchronizes before any atomic load that observes it.
//
//   - The producer's seq.Store(t+1) synchronizes before the consumer's
//     seq.Load that sees t+1: the value, and everything the producer did
//     before TryPush, is visible to the consumer once PopBatch returns it.
//   - The consumer's copy and clear of val, then its count.Add, happen
//     before the write of ticket t+cap's producer; see the proof below for
//     the chain. Producers never load seq on the fast path, and the
//     consumer never stores it: one locked instruction per item fewer than
//     a consumer that frees each slot with a store (push and pop measured
//     28 → 22 ns on one goroutine, BenchmarkPushPop/ring).
//   - head is published for Len and Stats only; it orders nothing.
//   - parked and the wake channel: see park.go.
//
// Why a producer's slot is always free (no check, no loop). Let producer P
// take ticket t at its tail.Add, B. The t+1 successful reservations holding
// tickets 0..t all made their count.Add before their tail.Add, so before B.
// Let M be the last of those count.Adds in the total order of atomic
// operations. M succeeded, so just after M, count <= limit <= cap. count
// after M is at least (t+1) − (items the consumer had given back before M),
// because failed reservations contribute +1 or 0 and every one of the t+1
// has added its 1. So the consumer had given back at least t+1−cap items,
// that is popped tickets 0..t−cap, before M and hence before B; by invariant
// 4 it had copied out and cleared ticket t−cap's value in slot t&mask before
// that (for t < cap there is nothing to pop). Nobody else writes slot
// t&mask until ticket t is published: the consumer waits for seq == t+1, and
// ticket t+cap cannot be taken before ticket t is popped, by the same
// argument. So P finds the slot free, with seq == t+1−cap (t on the first
// lap) and head > t−cap.
// (Builds with the race detector or the ringbufdebug tag check this.) The
// same chain, consumer's stores → its count.Add → M → tail.Adds → B, is the
// happens-before edge that orders the consumer's last use of the slot before
// P's write to it.
//
// Things a reader should know:
//
//   - Head-of-line: a producer that took ticket h but has not published yet
//     makes the ring look empty from h on, even if later tickets are
//     published. PopBatch stops at h. Its own publish will wake the consumer
//     (see park.go), and the gap lasts a few instructions unless the producer
//     is descheduled between its tail.Add and its publish.
//   - Spurious drops: a failed reservation holds +1 on count until it undoes
//     it, and reserve's first check reads a count that may be a moment old,
//     so a push can see the ring full a moment early. Either way count was
//     at the limit a moment before; a push never fails while count stays
//     below the limit.
//   - Batched give-back: PopBatch gives back its items with one count.Add at
//     the end of the batch, so slots it frees become reservable when the
//     batch ends, not one by one.

import (
	"runtime"
	"sync/atomic"
)

const (
	// cacheLinePad separates fields written by different parties. 128
	// rather than 64 because x86's adjacent-line prefetcher pulls lines in
	// pairs and arm64 server cores (and Apple's) have 128-byte lines.
	cacheLinePad = 128

	// closedLimit is the limit of a closed ring. It is below every possible
	// count, so every reservation fails, and SetLimit never replaces it.
	closedLimit = -1

	// maxCap bounds New's capacity so that tickets and counts can never
	// wrap in practice and the slot array stays a sane size.
	maxCap = 1 << 30

	// drainBatch is the stack buffer Drain pops into.
	drainBatch = 32
)

type slot[T any] struct {
	seq atomic.Uint64
	val T
}

// A Ring is a bounded multi-producer single-consumer queue of T, built on
// fetch-and-add tickets and per-slot sequence numbers (a Vyukov bounded
// queue with wait-free push). When the ring is at its limit or closed,
// TryPush drops the newest item and counts it; queued items are never
// dropped. See the package doc for who may call which method.
//
// A Ring must be created with New, or Init on its zero value, and must not
// be copied.
//
// Layout: the fields are grouped by who writes them, and each group that is
// written on the hot path sits on its own cache line (TestLayout checks):
// read-mostly, producers (count, tail, dropped, and the parked flag they
// read) and the consumer (head). The slots themselves are not padded: neighbouring
// slots share lines, which costs some false sharing between a producer
// publishing ticket t and the consumer popping t-1, in exchange for a
// compact array.
type Ring[T any] struct {
	// Read-mostly: written by New; limit also by SetLimit and Close, which
	// are rare. Producers and the consumer read these on every operation.
	slots []slot[T]
	mask  uint64
	limit atomic.Int64       // soft capacity in [0, cap], or closedLimit
	wake  chan struct{}      // capacity 1; see park.go
	waker Waker              // set by SetWaker: parks go through Park instead of wake; see waker.go
	_     [cacheLinePad]byte // keep the lines below off the read-mostly line

	prod producerLine
	cons consumerLine
}

// producerLine holds what every TryPush writes, and the consumer's parked
// flag, which every TryPush reads. Sharing the line costs nothing the
// consumer does not pay already (it gives reservations back with count.Add
// once per batch, on this line) and saves a push one cache line: with
// thousands of sessions, each push finds its ring's lines cold, and the
// flag's own line was one miss more per datagram.
type producerLine struct {
	count   atomic.Int64  // reservations not yet given back; the consumer subtracts once per batch
	tail    atomic.Uint64 // next ticket; = successful pushes
	dropped atomic.Uint64 // failed pushes
	parked  atomic.Bool   // the consumer is parked or about to; see park.go
	wakeups atomic.Uint64 // times a producer woke the parked consumer
	_       [cacheLinePad - 40]byte
}

// consumerLine holds what only the consumer writes.
type consumerLine struct {
	head atomic.Uint64 // next ticket to pop; atomic only so that Len and Stats can read it
	_    [cacheLinePad - 8]byte
}

// Stats are the ring's counters. Each is exact on its own; taken together
// they are consistent only at quiescence, when
// Pushed == Popped + Len() and Pushed + Dropped == calls to TryPush.
type Stats struct {
	Pushed  uint64 // successful TryPush calls
	Popped  uint64 // items returned by PopBatch and Drain
	Dropped uint64 // failed TryPush calls: ring at its limit, or closed
	Wakeups uint64 // times a producer woke the parked consumer
}

// New returns an empty ring whose capacity is capacity rounded up to a
// power of two, and at least 2. Its limit starts at its capacity.
// New panics if capacity is negative or above 1<<30.
func New[T any](capacity int) *Ring[T] {
	r := new(Ring[T])
	r.Init(capacity)
	return r
}

// Init makes the zero Ring r an empty ring of the given capacity, as New
// does, for a Ring embedded in a larger struct (which saves its users a
// pointer chase: the router's session holds its ring inline). Init must
// be called once, before r is shared.
func (r *Ring[T]) Init(capacity int) {
	if capacity < 0 || capacity > maxCap {
		panic("ringbuf: capacity out of range")
	}
	if r.slots != nil {
		panic("ringbuf: Init of a ring in use")
	}
	c := 2
	for c < capacity {
		c <<= 1
	}
	r.slots = make([]slot[T], c)
	r.mask = uint64(c - 1)
	r.wake = make(chan struct{}, 1)
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i)) // slot i waits for ticket i; r is published by whoever shares it
	}
	r.limit.Store(int64(c))
}

// Cap returns the ring's capacity, a power of two.
func (r *Ring[T]) Cap() int { return int(r.mask + 1) }

// Len returns the number of items taken and not yet popped, including items
// whose producers are still publishing them. It is a snapshot.
func (r *Ring[T]) Len() int {
	h := r.cons.head.Load()
	t := r.prod.tail.Load() // loaded after head, so t >= h
	return int(min(t-h, r.mask+1))
}

// Stats returns the ring's counters.
func (r *Ring[T]) Stats() Stats {
	return Stats{
		Pushed:  r.prod.tail.Load(),
		Popped:  r.cons.head.Load(),
		Dropped: r.prod.dropped.Load(),
		Wakeups: r.prod.wakeups.Load(),
	}
}

// Tail returns the ticket the next successful TryPush takes (the number
// of successful pushes so far). With several producers it is a snapshot:
// another producer may take that ticket first. It is wait-free, one load
// of a line every TryPush writes.
//
//gcassert:inline
func (r *Ring[T]) Tail() uint64 { return r.prod.tail.Load() }

// Head returns the ticket the next PopBatch returns first (the number of
// items popped so far): a batch PopBatch returns holds tickets
// [Head() before it, Head() after it). Only the consumer may rely on that.
//
//gcassert:inline
func (r *Ring[T]) Head() uint64 { return r.cons.head.Load() }

// TryPush appends v and reports whether it did. It returns false, counts a
// drop and leaves v with the caller when the ring holds Limit() items or is
// closed. On true, ownership of v passes to the consumer.
//
// TryPush may be called by any number of goroutines at once. It is
// wait-free: it never blocks, never loops and never allocates.
//
//gcassert:inline
func (r *Ring[T]) TryPush(v T) bool {
	t, ok := r.reserve()
	if !ok {
		return false
	}
	r.publish(t, v)
	return true
}

// reserve takes room and a ticket, or counts a drop.
//
// Reserve first and check second. Loading count, comparing it with limit and
// then adding is wrong: two producers can both see one free slot and both
// take it, and the second one's slot is still full. Compare-and-swapping
// count forward instead is correct but is a retry loop, which is what this
// ring exists to avoid.
func (r *Ring[T]) reserve() (uint64, bool) {
	// A full or closed ring fails on loads alone, without touching count.
	// Under overload this saves two contended RMWs per dropped datagram; on
	// a closed ring it is what lets Drain see count reach zero while
	// producers keep pushing. A stale count can only make this drop a push
	// that would have found room a moment later: the spurious drop at the
	// limit that the reservation below allows anyway.
	if r.prod.count.Load() >= r.limit.Load() {
		r.prod.dropped.Add(1)
		return 0, false
	}
	// The limit is loaded again after the reservation; correctness rests on
	// this check (and Drain's proof on this load), not on the one above.
	if r.prod.count.Add(1) > r.limit.Load() {
		r.prod.count.Add(-1) // give the failed reservation back
		r.prod.dropped.Add(1)
		return 0, false
	}
	return r.prod.tail.Add(1) - 1, true
}

// publish writes v into ticket t's slot, hands the slot to the consumer, and
// wakes the consumer if it is parked. t must come from a successful reserve.
func (r *Ring[T]) publish(t uint64, v T) {
	s := &r.slots[t&r.mask]
	s.val = v
	// Checked after the write so that the check's load adds no
	// happens-before edge the race detector would otherwise have to find
	// through count and tail.
	if checkInvariants && (s.seq.Load() != freeSeq(t, r.mask) || t > r.mask && r.cons.head.Load() < t-r.mask) {
		panic("ringbuf: producer's slot is not free")
	}
	s.seq.Store(t + 1) // publish val to the consumer
	// Dekker with Arm: this load follows our publish; Arm's parked store
	// precedes its load of the head slot. One of the two sees the other.
	if r.prod.parked.Load() {
		r.wakeSlow()
	}
}

// PopBatch moves up to len(dst) items, oldest first, into dst, clears the
// slots they occupied, and returns how many it moved. It never blocks; it
// returns 0 when the ring is empty or when the oldest item is still being
// published by its producer.
//
// PopBatch must only be called by the single consumer.
func (r *Ring[T]) PopBatch(dst []T) int {
	h := r.cons.head.Load()
	n := 0
	for n < len(dst) {
		s := &r.slots[h&r.mask]
		if s.seq.Load() != h+1 { // acquires the producer's val
			break
		}
		dst[n] = s.val
		s.val = *new(T) // let the buffer go; count.Add below hands the slot to ticket h+cap
		h++
		n++
	}
	if n > 0 {
		r.cons.head.Store(h)        // publish progress to Len and Stats only
		r.prod.count.Add(int64(-n)) // give back n reservations, after freeing their slots (invariant 4)
	}
	return n
}

// Limit returns the current soft capacity, 0 once the ring is closed.
func (r *Ring[T]) Limit() int {
	return int(max(r.limit.Load(), 0))
}

// SetLimit sets the soft capacity to n, clamped to [0, Cap()]. Pushes that
// would take the ring beyond it drop. Lowering the limit drops nothing that
// is already queued. It is how a pending session's buffer is kept small and
// then opened to Cap() when the session activates. SetLimit on a closed ring
// does nothing.
//
// SetLimit may be called from any goroutine. It is a CAS loop (lock-free,
// not wait-free), which is fine off the push path.
func (r *Ring[T]) SetLimit(n int) {
	n = min(max(n, 0), r.Cap())
	for {
		old := r.limit.Load()
		if old == closedLimit {
			return
		}
		// A plain Store here could reopen a ring that Close shut between
		// our load and our store.
		if r.limit.CompareAndSwap(old, int64(n)) { // publish the new limit to reserve
			return
		}
	}
}

// Close makes every later TryPush fail (and count as a drop), and wakes the
// consumer if it is parked: a consumer that waits only on the ring (Wait
// with a nil done) learns of the end that way, since Arm refuses to park a
// closed ring. Items already queued, and items whose producers reserved
// before Close, stay; the consumer collects them with Drain. Close is
// idempotent and may be called from any goroutine.
func (r *Ring[T]) Close() {
	r.limit.Store(closedLimit) // every reservation ordered after this fails; see Drain
	if r.waker != nil {
		// Dekker with Park: Park stores parked and then loads limit; we
		// stored limit and now load parked. The CAS picks one waker.
		if r.prod.parked.Load() && r.prod.parked.CompareAndSwap(true, false) {
			r.prod.wakeups.Add(1)
			r.waker.Wake()
		}
		return
	}
	// Dekker with Arm: Arm stores parked and then loads limit. If Arm's load
	// missed the store above, this token is sent after Arm drained the
	// channel, so the parked consumer receives it.
	select {
	case r.wake <- struct{}{}:
	default: // a token is waiting already
	}
}

// Closed reports whether Close has been called.
func (r *Ring[T]) Closed() bool { return r.limit.Load() == closedLimit }

// Drain pops every remaining item, oldest first, calls fn on each, and
// returns how many there were. It includes items whose producers reserved
// before Close and are still publishing: Drain yields (runtime.Gosched)
// until no reservation is outstanding, so it is not wait-free. After Drain
// returns the ring is empty for good.
//
// Why nothing can be left behind. Close's store of closedLimit comes at some
// point X of the total order of atomic operations. A reservation whose
// count.Add comes after X loads limit after X, sees closedLimit (which is
// never replaced) and fails; so every successful reservation made its
// count.Add before X. Drain stops at a load Z of count, after X, that reads
// 0. At Z, count = successful + (failed in flight) − given back, and the
// consumer never gives back more than it popped, nor pops more than
// succeeded; so given back = successful: every successful push was popped,
// and no later one can succeed. Producers that keep pushing after Close fail
// on reserve's first check, which only loads, so count does reach 0 once the
// few producers caught between that check and their reservation have undone
// it.
//
// Drain must only be called by the single consumer, after Close; it panics
// if the ring is not closed (it could otherwise wait forever).
func (r *Ring[T]) Drain(fn func(T)) int {
	if !r.Closed() {
		panic("ringbuf: Drain before Close")
	}
	var buf [drainBatch]T
	total := 0
	for {
		n := r.PopBatch(buf[:])
		for i := range n {
			fn(buf[i])
		}
		clear(buf[:n])
		total += n
		if n == 0 {
			if r.prod.count.Load() == 0 {
				return total
			}
			runtime.Gosched() // a producer is between reserving and publishing (or undoing)
		}
	}
}

// freeSeq is the sequence number ticket t finds in its slot: the slot's
// initial value on the first lap, the publish of ticket t−cap after it.
func freeSeq(t, mask uint64) uint64 {
	if t <= mask {
		return t
	}
	return t - mask
}
