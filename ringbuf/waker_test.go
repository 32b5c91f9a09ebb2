package ringbuf

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// chanWaker schedules the consumer by sending on a channel and counts how
// many continuations are outstanding: never more than one.
type chanWaker struct {
	sched       chan struct{}
	outstanding atomic.Int32
	calls       atomic.Uint64
}

func (w *chanWaker) Wake() {
	w.calls.Add(1)
	if w.outstanding.Add(1) != 1 {
		panic("ringbuf: consumer scheduled twice")
	}
	w.sched <- struct{}{}
}

// TestParkWakeExactlyOnce runs producers against a scheduled consumer that
// pops a few items per turn and parks, and checks that every item arrives,
// every park gets exactly one continuation, and Close schedules a parked
// consumer.
func TestParkWakeExactlyOnce(t *testing.T) {
	const producers, perProducer = 4, 20000
	r := New[int](64)
	w := &chanWaker{sched: make(chan struct{}, 1)}
	r.SetWaker(w)

	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perProducer; {
				if r.TryPush(p*perProducer + i) {
					i++
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); r.Close() }()

	got := 0
	var buf [8]int
	turns, parks := 0, 0
	// The ring starts unparked: the consumer owes itself the first turn.
	w.outstanding.Store(1)
	w.sched <- struct{}{}
	go func() {
		defer close(done)
		for range w.sched {
			w.outstanding.Add(-1)
			for {
				turns++
				got += r.PopBatch(buf[:])
				if r.Closed() && r.Len() == 0 {
					got += r.Drain(func(int) {})
					return
				}
				if r.Park() {
					parks++
					break
				}
			}
		}
	}()
	<-done
	require.Equal(t, producers*perProducer, got)
	require.Equal(t, uint64(parks), w.calls.Load(), "one Wake per park")
	require.Equal(t, w.calls.Load(), r.Stats().Wakeups)
	require.Positive(t, parks)
}

// TestParkSeesReadyItem: Park refuses to park when an item is ready or the
// ring is closed, and calls no Waker then.
func TestParkSeesReadyItem(t *testing.T) {
	r := New[int](4)
	w := &chanWaker{sched: make(chan struct{}, 4)}
	r.SetWaker(w)
	require.True(t, r.TryPush(1))
	require.False(t, r.Park())
	require.Equal(t, uint64(0), w.calls.Load())

	var buf [4]int
	require.Equal(t, 1, r.PopBatch(buf[:]))
	require.True(t, r.Park())
	require.True(t, r.TryPush(2)) // the edge: one Wake
	require.Equal(t, uint64(1), w.calls.Load())
	require.True(t, r.TryPush(3)) // not parked any more: no Wake
	require.Equal(t, uint64(1), w.calls.Load())

	w.outstanding.Store(0)
	require.Equal(t, 2, r.PopBatch(buf[:]))
	require.True(t, r.Park())
	r.Close() // Close ends the park
	require.Equal(t, uint64(2), w.calls.Load())
	w.outstanding.Store(0)
	require.False(t, r.Park(), "a closed ring is never parked on")
	r.Close()
	require.Equal(t, uint64(2), w.calls.Load(), "Close of an unparked ring wakes nobody")
}
