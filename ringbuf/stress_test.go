package ringbuf

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// item is a datagram stand-in: who pushed it and its place in that
// producer's sequence.
type item struct{ p, seq int }

// stressDeadline bounds every consumer loop in this file, so that a bug
// fails the test instead of hanging it.
const stressDeadline = 30 * time.Second

func TestStress(t *testing.T) {
	const total = 200000 // attempts per case, shared among the producers
	for _, producers := range []int{1, 2, 8} {
		for _, capacity := range []int{2, 4, 1024} {
			for _, notify := range []bool{false, true} {
				name := fmt.Sprintf("P%d/cap%d/wait", producers, capacity)
				if notify {
					name = fmt.Sprintf("P%d/cap%d/notify", producers, capacity)
				}
				t.Run(name, func(t *testing.T) {
					stress(t, producers, capacity, total/producers, notify)
				})
			}
		}
	}
}

// stress runs producers, each pushing n sequence-numbered items, against one
// consumer, then checks that each producer's successful pushes arrived
// exactly once and in order, and that the counters add up. The consumer
// parks with Wait, or (notify) with Arm + Notify and a ticker that wakes it
// by other means now and then, to exercise Disarm and stale tokens.
func stress(t *testing.T, producers, capacity, n int, notify bool) {
	r := New[item](capacity)
	ok := make([][]bool, producers) // ok[p][seq]: that push succeeded
	var wg sync.WaitGroup
	for p := range producers {
		ok[p] = make([]bool, n)
		wg.Go(func() {
			// Producers yield at different rates so that the ring swings
			// between empty (the consumer parks) and full (pushes drop).
			every := 1 + p%4
			for seq := range n {
				ok[p][seq] = r.TryPush(item{p, seq})
				if seq%every == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	prodDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(prodDone)
	}()

	got := make([][]int, producers)
	dst := make([]item, 16)
	consume := func(k int) {
		for _, it := range dst[:k] {
			got[it.p] = append(got[it.p], it.seq)
		}
		clear(dst[:k])
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(stressDeadline)
	for running := true; running; {
		if k := r.PopBatch(dst); k > 0 {
			consume(k)
			continue
		}
		require.True(t, time.Now().Before(deadline), "consumer made no progress before the deadline")
		if !notify {
			running = r.Wait(prodDone)
			continue
		}
		if r.Arm() {
			select {
			case <-r.Notify():
			case <-tick.C:
			case <-prodDone:
				running = false
			}
			r.Disarm()
		}
	}
	<-prodDone // every TryPush has returned, so everything is published
	for k := r.PopBatch(dst); k > 0; k = r.PopBatch(dst) {
		consume(k)
	}

	var pushed, dropped int
	for p := range producers {
		var want []int
		for seq, okay := range ok[p] {
			if okay {
				want = append(want, seq)
			} else {
				dropped++
			}
		}
		pushed += len(want)
		// Same list: nothing lost, nothing twice, nothing invented, and
		// the producer's order kept.
		require.Equal(t, want, got[p], "producer %d", p)
	}
	st := r.Stats()
	require.Equal(t, producers*n, pushed+dropped)
	require.Equal(t, uint64(pushed), st.Pushed)
	require.Equal(t, uint64(pushed), st.Popped)
	require.Equal(t, uint64(dropped), st.Dropped)
	require.LessOrEqual(t, st.Wakeups, st.Pushed)
	require.Zero(t, r.Len())
	require.Zero(t, r.prod.count.Load())
	t.Logf("pushed %d dropped %d wakeups %d", pushed, dropped, st.Wakeups)
}

// TestCloseRacesPush closes the ring while producers are still pushing and
// checks that every push that succeeded is popped or drained, and that
// nothing can enter the ring after Drain.
func TestCloseRacesPush(t *testing.T) {
	const producers, maxAttempts, afterClose = 4, 1 << 20, 200
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 30 {
		r := New[item](16)
		okSeqs := make([][]int, producers) // okSeqs[p]: seqs whose push succeeded
		attempts := make([]int, producers)
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				// Push until well after Close, so Close lands mid-stream.
				left := afterClose
				for seq := 0; seq < maxAttempts && left > 0; seq++ {
					if r.TryPush(item{p, seq}) {
						okSeqs[p] = append(okSeqs[p], seq)
					}
					attempts[p]++
					if r.Closed() {
						left--
					}
					if seq%(1+p) == 0 {
						runtime.Gosched()
					}
				}
			})
		}
		seen := make([][]int, producers)
		record := func(it item) { seen[it.p] = append(seen[it.p], it.seq) }
		closeAfter := rng.IntN(2000)
		dst := make([]item, 8)
		deadline := time.Now().Add(stressDeadline)
		for popped := 0; popped < closeAfter; {
			k := r.PopBatch(dst)
			for _, it := range dst[:k] {
				record(it)
			}
			popped += k
			if k == 0 {
				require.True(t, time.Now().Before(deadline), "iter %d: no progress", iter)
				runtime.Gosched() // producers run until Close, so items keep coming
			}
		}
		r.Close()
		drainWithin(t, r, record)
		wg.Wait()
		require.Zero(t, r.PopBatch(dst), "iter %d: an item entered the ring after Drain", iter)

		var pushed, total int
		for p := range producers {
			total += attempts[p]
			pushed += len(okSeqs[p])
			require.Equal(t, okSeqs[p], seen[p], "iter %d producer %d", iter, p)
		}
		st := r.Stats()
		require.Equal(t, uint64(pushed), st.Pushed)
		require.Equal(t, uint64(pushed), st.Popped)
		require.Equal(t, uint64(total-pushed), st.Dropped)
		require.Less(t, total, producers*maxAttempts, "iter %d: producers never saw Close", iter)
	}
}

// TestPingPong bounces items between producers and the consumer one at a
// time, so that every item must wake a parked goroutine. A lost wake-up
// hangs a round; the watchdog turns that into a failure.
func TestPingPong(t *testing.T) {
	for _, producers := range []int{1, 3} {
		t.Run(fmt.Sprintf("P%d", producers), func(t *testing.T) {
			pingPong(t, producers, 10000)
		})
	}
}

func pingPong(t *testing.T, producers, rounds int) {
	in := New[item](4) // >= producers: each has one item in flight
	acks := make([]*Ring[int], producers)
	for p := range acks {
		acks[p] = New[int](2)
	}
	var timedOut atomic.Bool
	done := make(chan struct{})
	watchdog := time.AfterFunc(stressDeadline, func() {
		timedOut.Store(true)
		close(done)
	})
	defer watchdog.Stop()

	var wg sync.WaitGroup
	wg.Go(func() { // the consumer: acknowledge every item to its producer
		dst := make([]item, 4)
		for left := producers * rounds; left > 0; {
			k := in.PopBatch(dst)
			for _, it := range dst[:k] {
				if !acks[it.p].TryPush(it.seq) {
					t.Errorf("ack ring of producer %d full", it.p)
					return
				}
			}
			left -= k
			if k == 0 && !in.Wait(done) {
				return
			}
		}
	})
	for p := range producers {
		wg.Go(func() {
			one := make([]int, 1)
			for seq := range rounds {
				if !in.TryPush(item{p, seq}) {
					t.Errorf("producer %d: push %d dropped", p, seq)
					return
				}
				for acks[p].PopBatch(one) == 0 {
					if !acks[p].Wait(done) {
						return
					}
				}
				if one[0] != seq {
					t.Errorf("producer %d: ack %d for push %d", p, one[0], seq)
					return
				}
			}
		})
	}
	wg.Wait()
	require.False(t, timedOut.Load(), "a wake-up was lost")
	st := in.Stats()
	require.Equal(t, uint64(producers*rounds), st.Popped)
	require.Zero(t, st.Dropped)
	t.Logf("consumer woken %d times for %d items", st.Wakeups, st.Popped)
}
