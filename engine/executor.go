package engine

import (
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
)

// The executor: a fixed set of worker goroutines runs the sessions that have
// work, instead of one goroutine per session.
//
//	Dispatch (any goroutine)           worker i (one goroutine)
//	  ring push                          pop a session from ready list i
//	  on the ring's empty → non-empty    pop up to BatchSize datagrams
//	  edge: push the session on its      HandleDatagrams(batch)
//	  worker's ready list; wake the      batch full? → back on the list's tail
//	  worker only if it is parked        else Park the ring (ringbuf/waker.go)
//	                                     list empty? → park the worker
//
// A busy worker takes no wake-up at all: sessions reach its list through
// wait-free pushes, and it parks only when its list is empty. A session is
// served one batch per turn, so one busy tunnel cannot starve the others on
// its worker. Handlers run on the workers and must not block (a handler that
// does implements BlockingHandler and gets a goroutine of its own).
//
// Parking the worker is Dekker's pattern again, on the worker's parked flag
// and its list's head: the worker stores parked = true and then looks at the
// list; a producer pushes and then loads parked. One of them sees the other,
// and a CAS picks the one that continues.

// cacheLinePad separates fields written by different goroutines (128, not
// 64: adjacent-line prefetch on x86, 128-byte lines on arm64 servers).
const cacheLinePad = 128

// DefaultWorkers is the worker count of an Executor made with 0 workers.
func DefaultWorkers() int { return runtime.GOMAXPROCS(0) }

// An Executor runs the active sessions of any number of Routers on a fixed
// set of worker goroutines. A proxy shares one among all its connections'
// routers; a Router made without one makes its own.
//
// Close it after every Router that uses it is closed.
type Executor struct {
	workers []worker
	next    atomic.Uint32 // round-robin placement of new sessions
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// worker is one worker goroutine's state. The ready list's head and the
// parked flag are written by producers, placed by the control planes that
// place sessions; the counters after the pad by the worker alone.
type worker struct {
	q      readyQueue    // its head sits on its own line
	parked atomic.Bool   // the worker is parked or about to; see routineWorker
	wake   chan struct{} // capacity 1: the token that unparks the worker
	labels workerLabels  // profiler labels (labels.go)
	placed atomic.Uint64 // sessions placed on it, by any router's control plane
	_      [cacheLinePad]byte

	// Worker-owned counters; atomic only so that Stats can read them.
	wakeups atomic.Uint64 // parks that ended with a producer's token
	turns   atomic.Uint64 // session turns run
	dgrams  atomic.Uint64 // datagrams handed to handlers
	delay   delayHist     // sampled queue delays of the sessions it runs (queuedelay.go)
	_       [cacheLinePad - (24+(queueDelayBuckets+1)*8)%cacheLinePad]byte
}

// NewExecutor starts an executor with n worker goroutines (DefaultWorkers
// if n <= 0).
func NewExecutor(n int) *Executor {
	if n <= 0 {
		n = DefaultWorkers()
	}
	e := &Executor{workers: make([]worker, n), stop: make(chan struct{})}
	for i := range e.workers {
		w := &e.workers[i]
		w.q.init()
		w.labels.init(i)
		w.wake = make(chan struct{}, 1)
		e.wg.Add(1)
		go e.routineWorker(w)
	}
	return e
}

// Workers returns the number of worker goroutines.
func (e *Executor) Workers() int { return len(e.workers) }

// Close stops the workers and waits for them. Sessions still scheduled are
// abandoned, so close every Router that uses e first. Close is idempotent.
func (e *Executor) Close() {
	e.once.Do(func() { close(e.stop) })
	e.wg.Wait()
}

// ExecutorStats are an executor's counters, summed over its workers.
type ExecutorStats struct {
	Workers   int
	Wakeups   uint64 // a parked worker woken by a producer: one goroutine wake-up each
	Turns     uint64 // session turns (one batch each)
	Datagrams uint64 // datagrams handed to handlers

	// QueueDelay: sampled time from Dispatch to the turn that hands a
	// datagram to its Handler, over every worker (queuedelay.go).
	QueueDelay QueueDelay

	// Placed counts, by worker index, the sessions placed on each worker
	// since the executor started: where Placement sent them.
	Placed []uint64
}

// Stats returns a snapshot of the executor's counters.
func (e *Executor) Stats() ExecutorStats {
	st := ExecutorStats{Workers: len(e.workers), Placed: make([]uint64, len(e.workers))}
	for i := range e.workers {
		w := &e.workers[i]
		st.Placed[i] = w.placed.Load()
		st.Wakeups += w.wakeups.Load()
		st.Turns += w.turns.Load()
		st.Datagrams += w.dgrams.Load()
		w.delay.addTo(&st.QueueDelay)
	}
	return st
}

// A Placement says which worker of an Executor runs a router's sessions.
// The zero value spreads them round-robin over every worker, shared with
// every other router of the executor.
type Placement struct {
	worker int // the preferred worker's index + 1; 0: round-robin
}

// OnWorker places every session on worker i mod the executor's worker
// count. A proxy with one quic.Transport per core uses it to keep a
// connection's tunnels on the worker of its transport's index
// (docs/scaling.md); i < 0 is round-robin.
func OnWorker(i int) Placement {
	if i < 0 {
		return Placement{}
	}
	return Placement{worker: i + 1}
}

// place picks the worker for a new session. Control plane only; it never
// runs per datagram.
func (e *Executor) place(pl Placement) *worker {
	var w *worker
	if pl.worker > 0 {
		w = &e.workers[(pl.worker-1)%len(e.workers)]
	} else {
		w = &e.workers[int(e.next.Add(1)-1)%len(e.workers)]
	}
	w.placed.Add(1)
	return w
}

// schedule puts n on w's ready list and wakes w if it is parked. It is
// wait-free apart from the token send, which happens only on the edge
// where the worker parked.
func (w *worker) schedule(n *schedNode) {
	w.q.push(n)
	// Dekker with routineWorker: our push precedes this load; its parked
	// store precedes its look at the list.
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default: // a token is waiting already
		}
	}
}

// routineWorker is the body of a worker goroutine.
func (e *Executor) routineWorker(w *worker) {
	defer e.wg.Done()
	scratch := make([][]byte, DefaultBatchSize)
	idle := &labelSet{w.labels.idle}
	cur := idle
	pprof.SetGoroutineLabels(cur.ctx)
	for {
		n, busy := w.q.pop()
		if n != nil {
			w.turns.Add(1)
			if n.s.labels != cur { // a switch only where the kind changes
				cur = n.s.labels
				pprof.SetGoroutineLabels(cur.ctx)
			}
			if n.s.runTurn(&scratch, w) {
				w.q.push(n) // still busy: back of the line
			}
			continue
		}
		if busy {
			runtime.Gosched() // a producer is between its swap and its link
			continue
		}
		// Park. Drop a stale token first (a producer that won a CAS of an
		// earlier park after the worker had moved on), so that it does not
		// end this park at once.
		select {
		case <-w.wake:
		default:
		}
		if cur != idle {
			cur = idle
			pprof.SetGoroutineLabels(cur.ctx)
		}
		w.parked.Store(true) // announce before looking; pairs with the load after push
		if !w.q.empty() && w.parked.CompareAndSwap(true, false) {
			continue // work arrived and no producer took the wake-up
		}
		select {
		case <-w.wake: // parked is false again: the producer cleared it
			w.wakeups.Add(1)
		case <-e.stop:
			return
		}
	}
}
