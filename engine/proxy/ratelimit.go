package proxy

import (
	"math"
	"sync/atomic"
	"time"
)

// Rate limits toward targets: per tunnel and per connection, datagrams per
// second and payload bytes per second, each a token bucket whose depth is
// Config.RateBurst worth of its rate. What a batch cannot take is dropped,
// in order from its end, and counted as "rate_limited".
//
// Each bucket is GCRA (the generic cell rate algorithm, a token bucket
// written as one number): tat is the theoretical arrival time, the instant
// at which the bucket will be full again. Taking n units at now moves it to
// max(tat, now) + n×perUnit; the units fit while that stays within burst of
// now. One int64, so a bucket is one atomic word: no lock, no allocation.
//
// Invariants and ownership:
//   - A tunnel's buckets are taken from only by the tunnel's consumer
//     (HandleDatagrams, on one executor worker at a time); the
//     connection's buckets by every worker that runs one of its tunnels.
//   - A batch reads the clock once, reads what every bucket has left
//     (loads), cuts the batch to the smallest, then charges every bucket
//     what the cut batch takes (a CAS loop each). Two workers racing the
//     same connection bucket can both pass the check before either
//     charges it, so a connection can go over by at most one batch per
//     worker; the bucket is then in debt and the next batches wait it out.
//
// The rate limit runs before the amplification budget (amplification.go),
// so that what it drops has not spent the budget.

// Defaults for the rate limits: well above what one tunnel of a busy
// client needs (make bench-e2e drives up to ~50,000 datagrams/s of 1,200
// bytes through one connection), and well below what a flood needs.
const (
	DefaultRateTunnelDatagrams = 100_000   // datagrams/s per tunnel
	DefaultRateTunnelBytes     = 128 << 20 // payload bytes/s per tunnel (~1.1 Gbit/s)
	DefaultRateConnDatagrams   = 200_000   // datagrams/s per connection
	DefaultRateConnBytes       = 256 << 20 // payload bytes/s per connection (~2.1 Gbit/s)
	DefaultRateBurst           = 100 * time.Millisecond
)

// monoEpoch anchors monoNow: time.Since reads the monotonic clock.
var monoEpoch = time.Now()

// monoNow is monotonic nanoseconds since the process started.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// A bucket is one GCRA token bucket; see the top of the file. A nil
// *bucket, or one of rate 0, has no limit.
type bucket struct {
	tat     atomic.Int64 // monoNow nanoseconds at which the bucket is full again
	perUnit float64      // nanoseconds one unit costs: 1e9 / rate; 0: no limit
	burst   int64        // nanoseconds of debt allowed: the bucket's depth
}

// setRate sets the bucket to rate units per second, depth burst worth of
// it; rate ≤ 0: no limit. Call it before the bucket is shared.
func (b *bucket) setRate(rate int64, burst time.Duration) {
	b.perUnit, b.burst = 0, int64(burst)
	if rate > 0 {
		b.perUnit = 1e9 / float64(rate)
	}
}

// avail is the units the bucket holds at now (a load, nothing taken).
func (b *bucket) avail(now int64) int64 {
	if b == nil || b.perUnit == 0 {
		return math.MaxInt64
	}
	debt := max(b.tat.Load()-now, 0)
	if debt >= b.burst {
		return 0
	}
	return int64(float64(b.burst-debt) / b.perUnit)
}

// charge takes n units at now, whether or not they fit (the caller cut its
// batch to avail first).
func (b *bucket) charge(now, n int64) {
	if b == nil || b.perUnit == 0 || n == 0 {
		return
	}
	cost := int64(math.Ceil(float64(n) * b.perUnit))
	for {
		old := b.tat.Load()
		if b.tat.CompareAndSwap(old, max(old, now)+cost) { // publishes the debt to every worker's avail
			return
		}
	}
}

// rateLimits are one level's buckets (a tunnel's or a connection's). A nil
// *rateLimits has no limit.
type rateLimits struct {
	dgrams bucket // datagrams
	bytes  bucket // payload bytes
}

// newRateLimits returns the buckets for the rates (per second; ≤ 0: no
// limit), or nil if neither limits.
func newRateLimits(dgrams, bytes int64, burst time.Duration) *rateLimits {
	if dgrams <= 0 && bytes <= 0 {
		return nil
	}
	r := &rateLimits{}
	r.dgrams.setRate(dgrams, burst)
	r.bytes.setRate(bytes, burst)
	return r
}

func (r *rateLimits) dgramBucket() *bucket {
	if r == nil {
		return nil
	}
	return &r.dgrams
}

func (r *rateLimits) byteBucket() *bucket {
	if r == nil {
		return nil
	}
	return &r.bytes
}

// limitBatch cuts w to what the tunnel's and the connection's buckets allow
// now, charges them for what stays, and returns what stays and its bytes
// (0 where neither limits); what it cuts is cleared and counted in
// *dropped. It reads the clock once.
func limitBatch(w [][]byte, tunnel, conn *rateLimits, dropped *atomic.Uint64) ([][]byte, int64) {
	if tunnel == nil && conn == nil {
		return w, 0
	}
	now := monoNow()
	td, tb := tunnel.dgramBucket(), tunnel.byteBucket()
	cd, cb := conn.dgramBucket(), conn.byteBucket()
	maxDgrams := min(td.avail(now), cd.avail(now))
	maxBytes := min(tb.avail(now), cb.avail(now))
	k, size := 0, int64(0)
	for _, d := range w {
		if int64(k) >= maxDgrams || size+int64(len(d)) > maxBytes {
			break
		}
		k++
		size += int64(len(d))
	}
	if k < len(w) {
		dropped.Add(uint64(len(w) - k))
		clear(w[k:])
		w = w[:k]
	}
	td.charge(now, int64(k))
	cd.charge(now, int64(k))
	tb.charge(now, size)
	cb.charge(now, size)
	return w, size
}
