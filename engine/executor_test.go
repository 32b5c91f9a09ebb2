package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReadyQueueExactlyOnce pushes distinct nodes from several producers
// and checks that the consumer pops each exactly once, in per-producer
// order, whatever the interleaving (the race detector watches the links).
func TestReadyQueueExactlyOnce(t *testing.T) {
	const producers, per = 4, 5000
	var q readyQueue
	q.init()
	nodes := make([][]schedNode, producers)
	for p := range nodes {
		nodes[p] = make([]schedNode, per)
		for i := range nodes[p] {
			// s doubles as an identity: (producer, index) packed in id.
			nodes[p][i].s = &Session{id: uint64(p)<<32 | uint64(i)}
		}
	}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				q.push(&nodes[p][i])
			}
		}()
	}
	next := make([]int, producers)
	got, busy := 0, 0
	for got < producers*per {
		n, b := q.pop()
		if n == nil {
			if b {
				busy++
			}
			runtime.Gosched()
			continue
		}
		p, i := int(n.s.id>>32), int(n.s.id&0xffffffff)
		require.Equal(t, next[p], i, "producer %d's nodes out of order", p)
		next[p]++
		got++
	}
	wg.Wait()
	n, _ := q.pop()
	require.Nil(t, n)
	require.True(t, q.empty())
	t.Logf("%d pops found a producer mid-push", busy)
}

// gatedHandler blocks in its first HandleDatagrams until gate is closed:
// a way for a test to keep a one-worker executor busy.
type gatedHandler struct {
	*recorder
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (h *gatedHandler) HandleDatagrams(b [][]byte) {
	h.once.Do(func() {
		close(h.entered)
		<-h.gate
	})
	h.recorder.HandleDatagrams(b)
}

// TestExecutorBusyWorkerTakesNoWakeups: while the only worker is busy,
// datagrams for a hundred other sessions put those sessions on its ready
// list without waking anything; the worker serves them all when it is free,
// and the executor counts no wake-up for them.
func TestExecutorBusyWorkerTakesNoWakeups(t *testing.T) {
	exec := NewExecutor(1)
	defer exec.Close()
	r := newTestRouter(t, Options{Executor: exec})
	defer r.Close()

	g := &gatedHandler{recorder: newRecorder(), gate: make(chan struct{}), entered: make(chan struct{})}
	_, err := r.Register(0, g)
	require.NoError(t, err)
	const sessions, each = 100, 10
	recs := make([]*recorder, sessions)
	for i := range recs {
		recs[i] = newRecorder()
		_, err := r.Register(uint64(4*(i+1)), recs[i])
		require.NoError(t, err)
	}
	waitFor(t, "worker idle", func() bool { return exec.workers[0].parked.Load() })
	wakes0 := exec.Stats().Wakeups

	require.Equal(t, Queued, r.Dispatch(0, []byte{0}))
	<-g.entered // the worker is inside the gated handler now
	for k := range each {
		for i := range recs {
			require.Equal(t, Queued, r.Dispatch(uint64(4*(i+1)), []byte{byte(k)}))
		}
	}
	close(g.gate)
	for i, rec := range recs {
		waitFor(t, "delivery", func() bool { return len(rec.datagrams()) == each })
		for k, d := range rec.datagrams() {
			require.Equal(t, []byte{byte(k)}, d, "session %d datagram %d", i, k)
		}
	}
	// The first datagram woke the parked worker; the other 1000 found it
	// busy.
	require.Equal(t, uint64(1), exec.Stats().Wakeups-wakes0)
}

// TestExecutorFairness: one worker, one session flooded without pause by a
// producer, and a second session that gets a single datagram: the second is
// served within a few turns, not after the flood.
func TestExecutorFairness(t *testing.T) {
	exec := NewExecutor(1)
	defer exec.Close()
	r := newTestRouter(t, Options{Executor: exec, RingSize: 256})
	defer r.Close()

	flood, victim := newRecorder(), newRecorder()
	_, err := r.Register(0, flood)
	require.NoError(t, err)
	_, err = r.Register(4, victim)
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				r.Dispatch(0, []byte{1})
			}
		}
	}()
	waitFor(t, "flood flowing", func() bool { return len(flood.datagrams()) > 1000 })
	require.Equal(t, Queued, r.Dispatch(4, []byte{2}))
	waitFor(t, "victim served during the flood", func() bool { return len(victim.datagrams()) == 1 })
	close(stop)
	wg.Wait()
}

// blockingRecorder is a recorder whose handler declares it may block.
type blockingRecorder struct {
	*recorder
	gate chan struct{}
}

func (h *blockingRecorder) Blocking() bool { return true }
func (h *blockingRecorder) HandleDatagrams(b [][]byte) {
	<-h.gate
	h.recorder.HandleDatagrams(b)
}

// TestBlockingHandlerOwnGoroutine: a BlockingHandler that blocks delays
// only its own session; sessions on the executor's only worker go on.
func TestBlockingHandlerOwnGoroutine(t *testing.T) {
	exec := NewExecutor(1)
	defer exec.Close()
	r := newTestRouter(t, Options{Executor: exec})
	defer r.Close()

	slow := &blockingRecorder{recorder: newRecorder(), gate: make(chan struct{})}
	fast := newRecorder()
	_, err := r.Register(0, slow)
	require.NoError(t, err)
	_, err = r.Register(4, fast)
	require.NoError(t, err)

	r.Dispatch(0, []byte{1})
	for i := range 50 {
		r.Dispatch(4, []byte{byte(i)})
	}
	waitFor(t, "fast session served while the slow one blocks", func() bool { return len(fast.datagrams()) == 50 })
	require.Empty(t, slow.datagrams())
	close(slow.gate)
	waitFor(t, "slow session served", func() bool { return len(slow.datagrams()) == 1 })
	require.NoError(t, r.Unregister(0))
	<-slow.closed
}

// TestNoGoroutinePerSession: a thousand active sessions with traffic cost
// no goroutine each.
func TestNoGoroutinePerSession(t *testing.T) {
	exec := NewExecutor(2)
	defer exec.Close()
	r := newTestRouter(t, Options{Executor: exec})
	defer r.Close()
	before := runtime.NumGoroutine()
	var delivered atomic.Int64
	h := countingHandler{&delivered}
	const n = 1000
	for i := range n {
		_, err := r.Register(uint64(4*i), h)
		require.NoError(t, err)
		r.Dispatch(uint64(4*i), []byte{1})
	}
	waitFor(t, "delivery", func() bool { return delivered.Load() == n })
	after := runtime.NumGoroutine()
	require.Less(t, after-before, 10, "goroutines grew from %d to %d with %d sessions", before, after, n)
	require.Equal(t, int64(n), r.Stats().Active)
}

type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) HandleDatagrams(b [][]byte) { h.n.Add(int64(len(b))) }
func (h countingHandler) Close(error)                {}

// TestExecutorCloseIdle: Close stops idle workers and is idempotent; a
// router made without an executor starts one and closes it (goleak in
// TestMain checks that nothing is left).
func TestExecutorCloseIdle(t *testing.T) {
	exec := NewExecutor(3)
	require.Equal(t, 3, exec.Workers())
	exec.Close()
	exec.Close()

	r := NewRouter(Options{Logger: discardLogger(), Workers: 2})
	rec := newRecorder()
	_, err := r.Register(8, rec)
	require.NoError(t, err)
	r.Dispatch(8, []byte{7})
	waitFor(t, "delivery", func() bool { return len(rec.datagrams()) == 1 })
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Router.Close with its own executor did not return")
	}
	<-rec.closed
}

// TestExecutorPlacement: routers placed OnWorker(i) put every session on
// worker i mod the worker count, whatever other routers do; a router
// without a placement spreads its sessions round-robin over every worker.
// The worker that runs a session's turns is the one it was placed on.
func TestExecutorPlacement(t *testing.T) {
	exec := NewExecutor(2)
	defer exec.Close()
	const each = 6
	byWorker := [2][]*recorder{}
	for _, i := range []int{0, 1, 2, 3} { // 2 and 3 wrap to workers 0 and 1
		r := newTestRouter(t, Options{Executor: exec, Placement: OnWorker(i)})
		defer r.Close()
		for k := range each {
			rec := newRecorder()
			s, err := r.Register(uint64(4*k), rec)
			require.NoError(t, err)
			require.Same(t, &exec.workers[i%2], s.worker, "router on worker %d, session %d", i, k)
			byWorker[i%2] = append(byWorker[i%2], rec)
		}
	}
	require.Equal(t, []uint64{2 * each, 2 * each}, exec.Stats().Placed)

	rr := newTestRouter(t, Options{Executor: exec})
	defer rr.Close()
	for k := range 2 * each {
		_, err := rr.Register(uint64(4*k), newRecorder())
		require.NoError(t, err)
	}
	require.Equal(t, []uint64{3 * each, 3 * each}, exec.Stats().Placed, "round-robin: half on each worker")

	// Turns run on the placed worker: worker 1's turn counter moves with
	// the datagrams of a session placed there, worker 0's does not.
	// The sessions registered above may still have a turn of their own
	// queued on a loaded machine: snapshot once worker 0 has been still.
	turns0 := exec.workers[0].turns.Load()
	for still := 0; still < 5; {
		time.Sleep(20 * time.Millisecond)
		if n := exec.workers[0].turns.Load(); n == turns0 {
			still++
		} else {
			turns0, still = n, 0
		}
	}
	r1 := newTestRouter(t, Options{Executor: exec, Placement: OnWorker(1)})
	defer r1.Close()
	rec := newRecorder()
	_, err := r1.Register(0, rec)
	require.NoError(t, err)
	for k := range 10 {
		require.Equal(t, Queued, r1.Dispatch(0, []byte{byte(k)}))
		waitFor(t, "delivery", func() bool { return len(rec.datagrams()) == k+1 })
	}
	require.Equal(t, turns0, exec.workers[0].turns.Load(), "worker 0 ran a turn of a session placed on worker 1")
	require.Equal(t, Placement{}, OnWorker(-1), "negative: round-robin")
}
