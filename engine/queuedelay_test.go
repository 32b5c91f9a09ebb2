package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQueueDelayBuckets: a delay lands in the first bucket whose bound is
// at least the delay; past the last bound, in the overflow.
func TestQueueDelayBuckets(t *testing.T) {
	bounds := QueueDelayBounds()
	require.Len(t, bounds, queueDelayBuckets-1)
	require.Equal(t, 256*time.Nanosecond, bounds[0])
	require.Equal(t, time.Duration(1<<30), bounds[len(bounds)-1])
	bucketOf := func(v time.Duration) int {
		var d delayHist
		d.record(v)
		var q QueueDelay
		d.addTo(&q)
		require.Equal(t, uint64(1), q.Count())
		require.Equal(t, v, q.Sum)
		for i, c := range q.Counts {
			if c == 1 {
				return i
			}
		}
		t.Fatal("not counted")
		return -1
	}
	require.Equal(t, 0, bucketOf(0))
	require.Equal(t, 0, bucketOf(1))
	for i, b := range bounds {
		require.Equal(t, i, bucketOf(b), "at bound %v", b)
		require.Equal(t, i+1, bucketOf(b+1), "just above bound %v", b)
	}
	require.Equal(t, queueDelayBuckets-1, bucketOf(time.Hour))
}

func TestDelaySampleShift(t *testing.T) {
	for c, want := range map[int]uint{2: 6, 32: 6, 64: 7, 128: 8, 1024: 11} {
		require.Equal(t, want, delaySampleShift(c), "capacity %d", c)
	}
}

// gateHandler blocks its worker on each batch until the test lets it go.
type gateHandler struct {
	entered chan struct{}
	release chan struct{}
}

func (h *gateHandler) HandleDatagrams([][]byte) {
	h.entered <- struct{}{}
	<-h.release
}
func (h *gateHandler) Close(error) {}

// TestQueueDelayMeasured: with the only worker held up by another session
// for 300 ms, the sampled datagram (ticket 0 of its session) waits at least
// that long, and one sample in P datagrams is taken per session.
func TestQueueDelayMeasured(t *testing.T) {
	exec := NewExecutor(1)
	t.Cleanup(exec.Close)                                        // after the router's Close, which newTestRouter registers later
	r := newTestRouter(t, Options{Executor: exec, RingSize: 32}) // P = 64
	gate := &gateHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release) // a failed check must not leave the worker stuck
		}
	}()
	_, err := r.Register(0, gate)
	require.NoError(t, err)
	h := &nopHandler{}
	_, err = r.Register(4, h)
	require.NoError(t, err)

	r.Dispatch(0, []byte("x"))
	<-gate.entered // the worker is busy with stream 0
	// Long against the delay a loaded machine gives stream 0's own ticket 0
	// (the worker's start): that sample must stay out of the bucket
	// counted below.
	const hold = 300 * time.Millisecond
	for range 32 {
		res := r.Dispatch(4, []byte("y")) // ticket 0 is stamped
		require.Equal(t, Queued, res, "%v", res)
	}
	time.Sleep(hold)
	released = true
	close(gate.release)
	require.Eventually(t, func() bool { return h.n.Load() == 32 }, 5*time.Second, time.Millisecond)
	q := exec.Stats().QueueDelay
	require.Equal(t, uint64(2), q.Count(), "ticket 0 of each stream")
	require.GreaterOrEqual(t, q.Sum, hold)
	require.Less(t, q.Sum, 5*time.Second)
	waited := uint64(0) // samples in buckets whose bound is at least hold
	for i, b := range QueueDelayBounds() {
		if b >= hold {
			waited += q.Counts[i]
		}
	}
	require.Equal(t, uint64(1), waited+q.Counts[queueDelayBuckets-1], "stream 4's ticket 0 waited for the worker: %v", q.Counts)

	// Tickets 32..63 of stream 4: no multiple of 64 among them, no sample;
	// ticket 64 is the next one.
	for range 32 {
		r.Dispatch(4, []byte("y"))
	}
	require.Eventually(t, func() bool { return h.n.Load() == 64 }, 5*time.Second, time.Millisecond)
	require.Equal(t, uint64(2), exec.Stats().QueueDelay.Count())
	r.Dispatch(4, []byte("y"))
	require.Eventually(t, func() bool { return exec.Stats().QueueDelay.Count() == 3 }, 5*time.Second, time.Millisecond)
}

// TestQueueDelayStaleStampSkipped: a stamp for another ticket is never
// used as this one's.
func TestQueueDelayStaleStampSkipped(t *testing.T) {
	r := newTestRouter(t, Options{RingSize: 32})
	s, err := r.Register(0, nil) // pull mode: nobody pops but the test
	require.NoError(t, err)
	var d delayHist
	s.stampQueueDelaySlow(64) // as if for ticket 64, while ticket 0 is popped
	d.observeQueueDelay(s, 0, 1)
	var q QueueDelay
	d.addTo(&q)
	require.Zero(t, q.Count())
}
