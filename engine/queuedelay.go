package engine

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Queue delay: how long a datagram waits in its session's ring, from
// Dispatch to the worker turn that hands it to the Handler. It is sampled,
// so that the data path stays cheap and allocation-free:
//
//   - Producer (Dispatch), before its push: if the ring's next ticket T is
//     a multiple of the sample period P, store one word in the session,
//     (T/P, now). A push that then fails leaves the stamp to the next
//     push, which stamps T again with a later time; so the stamp that
//     counts is the last one before ticket T was taken. Stored before T's
//     publish, it is visible to the consumer that pops T.
//   - Consumer (a worker's turn), after PopBatch popped tickets [h, h+n):
//     if a multiple T of P is among them and the stamp's ticket is T/P,
//     the delay is now − the stamp's time, recorded in the worker's
//     histogram before the batch goes to the Handler.
//
// The stamp carries T/P, so a consumer never reads another ticket's time:
// a stamp that does not match is skipped, not used. P is at least twice the
// ring's capacity (and at least 64) so that skips are rare: the stamp of
// T+P is stored only once ticket T+P−1−cap ≥ T+cap−1 was popped, that is,
// after at least one more turn for a batch smaller than the ring. With the
// default ring of 128, one datagram in 256 per session is sampled; a sample
// costs the producer one clock read and one atomic store, and the
// consumer's turn one atomic load.
//
// Two producers of one session racing for ticket T may each stamp it; the
// later stamp wins, a few nanoseconds off. Sessions with a BlockingHandler
// (on a goroutine of their own) and pull-mode sessions are not measured.

// queueDelayBounds are the histogram's bucket upper bounds: powers of 4
// from 256 ns to about 1.07 s. The last bucket counts what is above them.
var queueDelayBounds = func() [queueDelayBuckets - 1]time.Duration {
	var b [queueDelayBuckets - 1]time.Duration
	for i := range b {
		b[i] = time.Duration(1) << (queueDelayMinShift + 2*i)
	}
	return b
}()

const (
	queueDelayBuckets  = 13 // 12 bounds and the overflow
	queueDelayMinShift = 8  // first bound 2^8 ns

	// A stamp is (T/P mod 2^24) << 40 | (time mod 2^40) in units of
	// 2^stampUnitShift ns: 16 ns units wrap after 4.9 hours, far beyond
	// any delay, and differences are taken modulo the wrap.
	stampTimeBits  = 40
	stampTimeMask  = 1<<stampTimeBits - 1
	stampUnitShift = 4
)

// clockEpoch is the origin of the stamps' monotonic clock.
var clockEpoch = time.Now()

// stampNow is the time part of a stamp for now.
func stampNow() uint64 {
	return uint64(time.Since(clockEpoch)) >> stampUnitShift & stampTimeMask
}

// delaySampleShift is log2 of the sample period P for a ring of capacity
// c (a power of two): P = max(64, 2c).
//
//gcassert:inline
func delaySampleShift(c int) uint {
	return uint(max(6, bits.TrailingZeros(uint(c))+1))
}

// stampQueueDelaySlow records that the push about to take ticket t, a
// multiple of the sample period, happens now. Any producer may call it.
//
//go:noinline
func (s *Session) stampQueueDelaySlow(t uint64) {
	seq := t >> delaySampleShift(s.ring.Cap())
	s.delayStamp.Store(seq<<stampTimeBits | stampNow()) // read by the consumer that pops t
}

// QueueDelay is a histogram of sampled queue delays (see queuedelay.go's
// doc): Counts[i] counts delays at most QueueDelayBounds()[i] and above the
// bound before it; the last count is of delays above every bound.
type QueueDelay struct {
	Counts [queueDelayBuckets]uint64
	Sum    time.Duration // of every counted delay
}

// QueueDelayBounds returns the upper bounds of QueueDelay's buckets.
func QueueDelayBounds() []time.Duration { return queueDelayBounds[:] }

// Count is the number of sampled delays.
func (q QueueDelay) Count() uint64 {
	var n uint64
	for _, c := range q.Counts {
		n += c
	}
	return n
}

// delayHist is a worker's histogram. The worker alone writes it; atomic so
// that Stats can read it while it runs.
type delayHist struct {
	counts [queueDelayBuckets]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

// observeQueueDelay records the sampled delay, if any, of a batch just
// popped from s's ring: tickets [h, h+n), n > 0.
func (d *delayHist) observeQueueDelay(s *Session, h uint64, n int) {
	shift := delaySampleShift(s.ring.Cap())
	t := (h + uint64(n) - 1) >> shift << shift // the last multiple of P in the batch, if any
	if t < h {
		return
	}
	st := s.delayStamp.Load()
	if st>>stampTimeBits != t>>shift&(1<<(64-stampTimeBits)-1) {
		return // not stamped: a pull from before the session had a worker, or a lost race
	}
	ns := (stampNow() - st&stampTimeMask) & stampTimeMask << stampUnitShift
	d.record(time.Duration(ns))
}

// record adds one delay.
func (d *delayHist) record(v time.Duration) {
	// Bucket i holds v <= 2^(8+2i): i = ceil((bitlen(v-1) - 8) / 2).
	i := 0
	if v > 1 {
		i = max(0, (bits.Len64(uint64(v-1))-queueDelayMinShift+1)/2)
	}
	d.counts[min(i, queueDelayBuckets-1)].Add(1)
	d.sum.Add(uint64(v))
}

// addTo adds d's counts to q.
func (d *delayHist) addTo(q *QueueDelay) {
	for i := range d.counts {
		q.Counts[i] += d.counts[i].Load()
	}
	q.Sum += time.Duration(d.sum.Load())
}
