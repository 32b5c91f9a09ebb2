package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A bucket holds rate × burst units when full, refills at its rate, and
// charging what does not fit puts it in debt.
func TestBucket(t *testing.T) {
	var b bucket
	b.setRate(1000, 100*time.Millisecond) // 1 unit a millisecond, 100 deep
	ms := int64(time.Millisecond)
	now := 10 * ms
	require.EqualValues(t, 100, b.avail(now))
	b.charge(now, 60)
	require.EqualValues(t, 40, b.avail(now))
	require.EqualValues(t, 50, b.avail(now+10*ms), "10 ms refill 10")
	b.charge(now, 40)
	require.EqualValues(t, 0, b.avail(now))
	b.charge(now, 50) // over: in debt
	require.EqualValues(t, 0, b.avail(now+40*ms), "debt waited out first")
	require.EqualValues(t, 10, b.avail(now+60*ms))
	require.EqualValues(t, 100, b.avail(now+time.Hour.Nanoseconds()), "full, never more")

	var none bucket
	none.setRate(0, time.Second)
	require.Greater(t, none.avail(now), int64(1<<40), "rate 0: no limit")
	var nilB *bucket
	nilB.charge(now, 5)
}

// A batch is cut to the smaller of the tunnel's and the connection's
// buckets, in datagrams and in bytes, and the cut is counted.
func TestLimitBatch(t *testing.T) {
	batch := func(n, size int) [][]byte {
		w := make([][]byte, n)
		for i := range w {
			w[i] = make([]byte, size)
		}
		return w
	}
	var dropped atomic.Uint64
	tun := newRateLimits(1000, 0, 100*time.Millisecond)    // 100 datagrams deep
	conn := newRateLimits(0, 10_000, 100*time.Millisecond) // 1,000 bytes deep
	w, size := limitBatch(batch(300, 1), tun, nil, &dropped)
	require.Len(t, w, 100)
	require.EqualValues(t, 100, size)
	require.EqualValues(t, 200, dropped.Load())

	w, size = limitBatch(batch(20, 100), nil, conn, &dropped)
	require.Len(t, w, 10, "bytes: 1,000 deep")
	require.EqualValues(t, 1000, size)
	require.EqualValues(t, 210, dropped.Load())

	w, _ = limitBatch(batch(5, 100), nil, nil, &dropped)
	require.Len(t, w, 5, "no limits")
	require.Nil(t, newRateLimits(0, -1, time.Second))
}

// Tunnels on several workers share their connection's buckets: together
// they stay within rate × time + burst, give or take a batch per worker.
func TestConnRateShared(t *testing.T) {
	const rate, workers, batchLen = 20_000, 4, 16
	burst := 50 * time.Millisecond
	conn := newRateLimits(rate, 0, burst)
	var sent, dropped atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			tun := newRateLimits(1_000_000, 0, burst) // does not bind
			w := make([][]byte, batchLen)
			for time.Since(start) < 300*time.Millisecond {
				w = w[:batchLen]
				for i := range w {
					w[i] = []byte{1}
				}
				kept, _ := limitBatch(w, tun, conn, &dropped)
				sent.Add(uint64(len(kept)))
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := uint64(rate*elapsed.Seconds()+rate*burst.Seconds()) + workers*batchLen
	t.Logf("sent %d in %v (bound %d), dropped %d", sent.Load(), elapsed, bound, dropped.Load())
	require.LessOrEqual(t, sent.Load(), bound)
	require.Positive(t, dropped.Load())
	require.Greater(t, sent.Load(), uint64(rate*burst.Seconds()), "at least the burst passes")
}

// The rate check allocates nothing.
func TestLimitBatchDoesNotAllocate(t *testing.T) {
	tun := newRateLimits(1e9, 1e12, time.Second)
	conn := newRateLimits(1e9, 1e12, time.Second)
	var dropped atomic.Uint64
	w := [][]byte{make([]byte, 1200), make([]byte, 1200)}
	allocs := testing.AllocsPerRun(1000, func() {
		w, _ = limitBatch(w[:2], tun, conn, &dropped)
	})
	require.Zero(t, allocs)
}
