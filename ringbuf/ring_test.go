package ringbuf

import (
	"math"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type dgram struct {
	buf [64]byte
	n   int
}

func TestNewRoundsCapacity(t *testing.T) {
	for in, want := range map[int]int{0: 2, 1: 2, 2: 2, 3: 4, 5: 8, 64: 64, 1000: 1024} {
		r := New[int](in)
		require.Equal(t, want, r.Cap(), "New(%d)", in)
		require.Equal(t, want, r.Limit())
		require.Zero(t, r.Len())
	}
	require.Panics(t, func() { New[int](-1) })
	require.Panics(t, func() { New[int](maxCap + 1) })
}

func TestFIFOAcrossLaps(t *testing.T) {
	r := New[int](4)
	dst := make([]int, 3)
	next, want := 0, 0
	for range 100 {
		for r.TryPush(next) {
			next++
		}
		require.Equal(t, 4, r.Len())
		n := r.PopBatch(dst)
		require.Equal(t, 3, n)
		for _, v := range dst[:n] {
			require.Equal(t, want, v)
			want++
		}
	}
	st := r.Stats()
	require.Equal(t, uint64(next), st.Pushed)
	require.Equal(t, uint64(want), st.Popped)
	require.Equal(t, uint64(100), st.Dropped) // one failed push ends each fill
	require.Equal(t, st.Pushed, st.Popped+uint64(r.Len()))
}

func TestFullDropsNewest(t *testing.T) {
	r := New[int](2)
	require.True(t, r.TryPush(1))
	require.True(t, r.TryPush(2))
	require.False(t, r.TryPush(3))
	require.False(t, r.TryPush(4))
	dst := make([]int, 4)
	require.Equal(t, 2, r.PopBatch(dst))
	require.Equal(t, []int{1, 2}, dst[:2])
	require.Equal(t, uint64(2), r.Stats().Dropped)
	require.Zero(t, r.PopBatch(dst))
	require.Zero(t, r.PopBatch(nil))
}

func TestPopBatchClearsSlots(t *testing.T) {
	r := New[*dgram](4)
	for range 3 {
		require.True(t, r.TryPush(&dgram{}))
	}
	dst := make([]*dgram, 2)
	require.Equal(t, 2, r.PopBatch(dst))
	require.Nil(t, r.slots[0].val)
	require.Nil(t, r.slots[1].val)
	require.NotNil(t, r.slots[2].val, "unpopped slot must keep its value")
}

func TestZeroAllocs(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		r := New[[]byte](64)
		buf := make([]byte, 1500)
		dst := make([][]byte, 16)
		allocs := testing.AllocsPerRun(1000, func() {
			for range 16 {
				r.TryPush(buf)
			}
			r.PopBatch(dst)
		})
		require.Zero(t, allocs)
	})
	t.Run("pointer", func(t *testing.T) {
		r := New[*dgram](64)
		d := &dgram{}
		dst := make([]*dgram, 16)
		allocs := testing.AllocsPerRun(1000, func() {
			for range 16 {
				r.TryPush(d)
			}
			r.PopBatch(dst)
		})
		require.Zero(t, allocs)
	})
	t.Run("full", func(t *testing.T) {
		r := New[[]byte](2)
		buf := make([]byte, 1500)
		r.TryPush(buf)
		r.TryPush(buf)
		require.Zero(t, testing.AllocsPerRun(1000, func() { r.TryPush(buf) }))
	})
	t.Run("wake", func(t *testing.T) {
		r := New[*dgram](64)
		d := &dgram{}
		dst := make([]*dgram, 1)
		timeout := time.NewTimer(time.Minute) // allocated outside the measured func
		defer timeout.Stop()
		allocs := testing.AllocsPerRun(1000, func() {
			r.Arm()
			r.TryPush(d) // takes the edge and sends the token
			select {
			case <-r.Notify():
			case <-timeout.C:
				panic("wake-up lost")
			}
			r.Disarm()
			r.PopBatch(dst)
		})
		require.Zero(t, allocs)
	})
}

// TestDifferential checks the ring against a slice under random operations
// from one goroutine.
func TestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		r := New[int](1 << rng.IntN(6))
		var ref []int
		limit, closed := r.Cap(), false
		next, dropped := 0, uint64(0)
		dst := make([]int, 8)
		for range 2000 {
			switch op := rng.IntN(100); {
			case op < 55:
				ok := r.TryPush(next)
				want := !closed && len(ref) < limit
				require.Equal(t, want, ok, "round %d push %d", round, next)
				if ok {
					ref = append(ref, next)
				} else {
					dropped++
				}
				next++
			case op < 90:
				k := rng.IntN(len(dst) + 1)
				n := r.PopBatch(dst[:k])
				want := min(k, len(ref))
				require.Equal(t, want, n)
				if n > 0 {
					require.Equal(t, ref[:n], dst[:n])
				}
				ref = ref[n:]
			case op < 99:
				n := rng.IntN(r.Cap() + 3)
				r.SetLimit(n)
				if !closed {
					limit = min(n, r.Cap())
				}
			default:
				r.Close()
				closed = true
			}
			require.Equal(t, len(ref), r.Len())
			require.Equal(t, dropped, r.Stats().Dropped)
		}
		r.Close()
		var got []int
		r.Drain(func(v int) { got = append(got, v) })
		require.Equal(t, len(ref), len(got))
		if len(ref) > 0 {
			require.Equal(t, ref, got)
		}
		st := r.Stats()
		require.Equal(t, st.Pushed, st.Popped)
	}
}

// TestHeadOfLine splits a push into its reservation and its publish to
// stand for a producer that is descheduled in between.
func TestHeadOfLine(t *testing.T) {
	r := New[int](8)
	dst := make([]int, 8)
	t0, ok := r.reserve() // producer A stalls after taking ticket 0
	require.True(t, ok)
	require.True(t, r.TryPush(2)) // producer B takes ticket 1 and publishes
	require.Equal(t, 2, r.Len())
	require.Zero(t, r.PopBatch(dst), "ticket 0 is not published; the ring must look empty")
	require.True(t, r.Arm(), "consumer parks behind the unpublished ticket")
	require.Zero(t, r.Stats().Wakeups)
	r.publish(t0, 1) // A's publish takes the edge
	require.Equal(t, uint64(1), r.Stats().Wakeups)
	select {
	case <-r.Notify():
	default:
		t.Fatal("publish of the head ticket did not wake the consumer")
	}
	r.Disarm()
	require.Equal(t, 2, r.PopBatch(dst))
	require.Equal(t, []int{1, 2}, dst[:2])
}

func TestSetLimitPending(t *testing.T) {
	r := New[int](1024)
	r.SetLimit(3)
	require.Equal(t, 3, r.Limit())
	for i := range 3 {
		require.True(t, r.TryPush(i))
	}
	require.False(t, r.TryPush(3), "4th push beyond the pending limit must drop")
	r.SetLimit(r.Cap()) // the session activates
	for i := 4; i < 10; i++ {
		require.True(t, r.TryPush(i))
	}
	dst := make([]int, 16)
	require.Equal(t, 9, r.PopBatch(dst))
	require.Equal(t, []int{0, 1, 2, 4, 5, 6, 7, 8, 9}, dst[:9])
	require.Equal(t, uint64(1), r.Stats().Dropped)

	r.SetLimit(-5)
	require.Zero(t, r.Limit())
	require.False(t, r.TryPush(0))
	r.SetLimit(math.MaxInt)
	require.Equal(t, r.Cap(), r.Limit())

	// Lowering the limit keeps what is queued.
	for i := range 5 {
		require.True(t, r.TryPush(i))
	}
	r.SetLimit(2)
	require.False(t, r.TryPush(5))
	require.Equal(t, 5, r.PopBatch(dst))
}

func TestCloseDrain(t *testing.T) {
	r := New[int](8)
	for i := range 5 {
		require.True(t, r.TryPush(i))
	}
	require.Panics(t, func() { r.Drain(func(int) {}) })
	r.Close()
	r.Close() // idempotent
	require.True(t, r.Closed())
	require.Zero(t, r.Limit())
	require.False(t, r.TryPush(99))
	r.SetLimit(8) // must not reopen
	require.False(t, r.TryPush(99))
	var got []int
	require.Equal(t, 5, r.Drain(func(v int) { got = append(got, v) }))
	require.Equal(t, []int{0, 1, 2, 3, 4}, got)
	require.Zero(t, r.Drain(func(int) { t.Fatal("nothing left") }))
	st := r.Stats()
	require.Equal(t, Stats{Pushed: 5, Popped: 5, Dropped: 2}, st)
}

// TestDrainWaitsForReservation: a producer that reserved before Close and
// publishes late is still drained.
func TestDrainWaitsForReservation(t *testing.T) {
	r := New[int](8)
	require.True(t, r.TryPush(1))
	tk, ok := r.reserve()
	require.True(t, ok)
	r.Close()
	published := make(chan struct{})
	go func() {
		defer close(published)
		r.publish(tk, 2)
	}()
	var got []int
	drainWithin(t, r, func(v int) { got = append(got, v) })
	<-published
	require.Equal(t, []int{1, 2}, got)
}

func TestArmWithWork(t *testing.T) {
	r := New[int](4)
	require.True(t, r.TryPush(1))
	require.False(t, r.Arm(), "Arm must refuse to park on a non-empty ring")
	require.False(t, r.prod.parked.Load())
	require.True(t, r.TryPush(2))
	require.Zero(t, r.Stats().Wakeups)
}

// TestEdgeOnlyWakeups: pushes into a busy consumer cost no wake-ups; a burst
// into a parked one costs exactly one.
func TestEdgeOnlyWakeups(t *testing.T) {
	r := New[int](64)
	for i := range 40 {
		require.True(t, r.TryPush(i)) // consumer busy: never armed
	}
	require.Zero(t, r.Stats().Wakeups)
	dst := make([]int, 64)
	require.Equal(t, 40, r.PopBatch(dst))

	require.True(t, r.Arm())
	done := make(chan struct{})
	go func() { // the burst comes from another goroutine, as in the router
		defer close(done)
		for i := range 40 {
			r.TryPush(i)
		}
	}()
	select {
	case <-r.Notify():
	case <-time.After(time.Minute):
		t.Fatal("the burst did not wake the consumer")
	}
	r.Disarm()
	<-done
	require.Equal(t, uint64(1), r.Stats().Wakeups)
	require.Equal(t, 40, r.PopBatch(dst))
	select {
	case <-r.Notify():
		t.Fatal("a burst must send one token")
	default:
	}
}

// TestStaleToken: a token left by a wake-up the consumer did not use must
// not end its next park.
func TestStaleToken(t *testing.T) {
	r := New[int](4)
	require.True(t, r.Arm())
	require.True(t, r.TryPush(1)) // takes the edge, token sent
	r.Disarm()                    // consumer woke by other means
	dst := make([]int, 4)
	require.Equal(t, 1, r.PopBatch(dst))
	require.True(t, r.Arm())
	select {
	case <-r.Notify():
		t.Fatal("Arm must drop the stale token")
	default:
	}
	r.Disarm()
}

func TestWaitReturnsFalseWhenDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New[int](4)
		done := make(chan struct{})
		res := make(chan bool)
		go func() { res <- r.Wait(done) }()
		synctest.Wait() // the consumer is parked
		require.True(t, r.prod.parked.Load())
		close(done)
		require.False(t, <-res)
		require.False(t, r.prod.parked.Load(), "Wait must disarm on done")

		// done wins over work.
		require.True(t, r.TryPush(1))
		require.False(t, r.Wait(done))
	})
}

func TestWaitWakesOnPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New[int](4)
		res := make(chan bool)
		go func() { res <- r.Wait(nil) }()
		synctest.Wait()
		select {
		case <-res:
			t.Fatal("Wait returned on an empty ring")
		default:
		}
		require.True(t, r.TryPush(7))
		require.True(t, <-res)
		require.Equal(t, uint64(1), r.Stats().Wakeups)
		require.True(t, r.Wait(nil), "non-empty ring: Wait returns at once")
	})
}

// drainWithin runs Drain, failing the test instead of hanging if Drain never
// sees the outstanding reservations go.
func drainWithin[T any](t *testing.T, r *Ring[T], fn func(T)) int {
	t.Helper()
	res := make(chan int, 1)
	go func() { res <- r.Drain(fn) }()
	select {
	case n := <-res:
		return n
	case <-time.After(time.Minute):
		t.Fatal("Drain did not finish")
		return 0
	}
}

// Close wakes a consumer parked on the ring alone, and a closed ring is
// never parked on: a consumer can learn of the end through the ring.
func TestCloseWakesParkedConsumer(t *testing.T) {
	r := New[int](4)
	woke := make(chan struct{})
	go func() {
		r.Wait(nil)
		close(woke)
	}()
	time.Sleep(10 * time.Millisecond) // let it park (if it did not, Close still ends the wait)
	r.Close()
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the parked consumer")
	}
	require.False(t, r.Arm(), "Arm parks on a closed ring")
	done := make(chan struct{})
	go func() { r.Wait(nil); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait on a closed ring blocked")
	}
}
