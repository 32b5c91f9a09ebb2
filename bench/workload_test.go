package bench

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/masqroute/masqroute/bench/baseline"
)

const (
	payloadSize = 1200
	// readBatch is how many datagrams a dispatcher dispatches between
	// yields; see the package doc.
	readBatch = 64
	// burst is how many datagrams in a row BenchmarkDispatchBurst sends
	// to the session it picks.
	burst = 16
	// queueCap is every implementation's per-session queue; bigQueueCap
	// replaces it from bigSessions sessions on.
	queueCap    = 128
	bigQueueCap = 8
	bigSessions = 1_000_000
)

// payloads is the buffer pool. Put takes back only what Get gave out.
var payloads = sync.Pool{New: func() any { return new([payloadSize]byte) }}

func getPayload() []byte { return payloads.Get().(*[payloadSize]byte)[:] }

func releasePayload(d []byte) { payloads.Put((*[payloadSize]byte)(d)) }

// rng is a xorshift64 generator: one per dispatcher, no allocation, no
// shared state.
type rng uint64

func newRng(seed uint64) rng {
	// splitmix64 spreads consecutive seeds apart.
	z := seed + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	if z == 0 {
		z = 1
	}
	return rng(z)
}

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

// intn returns a number in [0, n) for n < 2^32 (Lemire's multiply-shift).
func (r *rng) intn(n uint64) uint64 { return (r.next() >> 32) * n >> 32 }

// sink is the Consumer of one slot: it counts what it receives and, in
// BenchmarkLatency, records how long each datagram took. The sessions that
// churn replaces in a slot share its sink. Padded to a cache line so that
// neighbouring sessions' counters do not share one.
type sink struct {
	n       atomic.Uint64 // datagrams received
	batches atomic.Uint64 // HandleDatagrams calls
	lat     *latencyRecorder
	_       [40]byte
}

func (s *sink) HandleDatagrams(batch [][]byte) {
	if s.lat != nil {
		s.lat.record(batch)
	}
	s.batches.Add(1)
	s.n.Add(uint64(len(batch)))
}

// setup is a router with a fixed number of live sessions.
type setup struct {
	impl  string
	r     baseline.Router
	ids   []atomic.Uint64 // slot → live stream ID; written by the churner
	sinks []sink          // slot → its consumer
	lat   *latencyRecorder

	nextID     uint64        // next fresh stream ID; churner only
	seeds      atomic.Uint64 // hands each dispatcher its seed
	dispatched atomic.Uint64 // Dispatch calls so far, added up after each run
}

type setupKey struct {
	impl     string
	sessions int
	latency  bool
}

// cached is the one setup kept between sub-benchmarks.
var cached struct {
	key setupKey
	s   *setup
}

// getSetup returns the setup for key, building it (and closing the previous
// one) if it is not the cached one.
func getSetup(b *testing.B, key setupKey) *setup {
	b.Helper()
	if cached.s != nil && cached.key == key {
		return cached.s
	}
	closeCached()
	s, err := newSetup(key)
	if err != nil {
		b.Fatal(err)
	}
	cached.key, cached.s = key, s
	return s
}

// closeCached closes the cached setup; top-level benchmarks defer it.
func closeCached() {
	if cached.s != nil {
		cached.s.r.Close()
		cached.s = nil
		runtime.GC() // give the next setup the memory back
	}
}

func newSetup(key setupKey) (*setup, error) {
	q := queueCap
	if key.sessions >= bigSessions {
		q = bigQueueCap
	}
	r, err := baseline.New(key.impl, baseline.Config{QueueCap: q, Release: releasePayload})
	if err != nil {
		return nil, err
	}
	s := &setup{
		impl:   key.impl,
		r:      r,
		ids:    make([]atomic.Uint64, key.sessions),
		sinks:  make([]sink, key.sessions),
		nextID: 4 * uint64(key.sessions),
	}
	if key.latency {
		s.lat = newLatencyRecorder()
	}
	for i := range s.ids {
		id := 4 * uint64(i)
		s.sinks[i].lat = s.lat
		if err := r.Add(id, &s.sinks[i]); err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: Add(%d): %w", key.impl, id, err)
		}
		s.ids[i].Store(id)
	}
	return s, nil
}

func (s *setup) delivered() uint64 {
	n, _ := s.counts()
	return n
}

// counts sums the sinks: datagrams delivered and batches they came in.
func (s *setup) counts() (delivered, batches uint64) {
	for i := range s.sinks {
		delivered += s.sinks[i].n.Load()
		batches += s.sinks[i].batches.Load()
	}
	return delivered, batches
}

// settle waits until every datagram dispatched so far is delivered or
// dropped, or until that count stops moving (syncmap and xsync can lose one
// that raced with a removal; see package baseline).
func (s *setup) settle() {
	deadline := time.Now().Add(5 * time.Second)
	last, still := uint64(0), 0
	for time.Now().Before(deadline) {
		done := s.delivered() + s.r.Dropped()
		if done >= s.dispatched.Load() {
			return
		}
		if done == last {
			if still++; still == 20 {
				return
			}
		} else {
			last, still = done, 0
		}
		time.Sleep(time.Millisecond)
	}
}

// dispatchLoop is the body of each RunParallel dispatcher.
func (s *setup) dispatchLoop(pb *testing.PB) {
	rnd := newRng(s.seeds.Add(1))
	ids := s.ids
	n := uint64(len(ids))
	var calls uint64
	for pb.Next() {
		id := ids[rnd.intn(n)].Load()
		s.r.Dispatch(id, getPayload())
		calls++
		if calls%readBatch == 0 {
			runtime.Gosched()
		}
	}
	s.dispatched.Add(calls)
}

// burstLoop is dispatchLoop sending burst datagrams in a row to each
// session it picks.
func (s *setup) burstLoop(pb *testing.PB) {
	rnd := newRng(s.seeds.Add(1))
	ids := s.ids
	n := uint64(len(ids))
	var calls uint64
	var id uint64
	for pb.Next() {
		if calls%burst == 0 {
			id = ids[rnd.intn(n)].Load()
		}
		s.r.Dispatch(id, getPayload())
		calls++
		if calls%readBatch == 0 {
			runtime.Gosched()
		}
	}
	s.dispatched.Add(calls)
}

// window is one timed run's counters.
type window struct {
	s                                      *setup
	delivered0, batches0, dropped0, wakes0 uint64
	cpu0, busy0                            time.Duration
	gc0                                    uint32
	churn                                  *churner
}

// startWindow settles the setup, starts the churner if asked, snapshots the
// counters and resets the timer.
func startWindow(b *testing.B, s *setup, churn bool) *window {
	b.Helper()
	s.settle()
	w := &window{s: s}
	if churn {
		w.churn = startChurner(s, churnRate)
	}
	w.dropped0 = s.r.Dropped()
	w.wakes0 = s.r.Wakeups()
	w.delivered0, w.batches0 = s.counts()
	b.ReportAllocs()
	w.gc0 = numGC()
	w.cpu0, w.busy0 = processCPU(), machineBusy()
	b.ResetTimer()
	return w
}

// stop stops the timer and the churner and reports drops/op, dgrams/s,
// dgrams/batch, gc/s, cpus, other-cpus and, with churn, churn/s.
func (w *window) stop(b *testing.B) {
	b.Helper()
	b.StopTimer()
	cpu1, busy1 := processCPU(), machineBusy()
	gcs := numGC() - w.gc0
	cpu := cpu1 - w.cpu0
	elapsed := b.Elapsed()
	delivered, batches := w.s.counts()
	delivered -= w.delivered0
	batches -= w.batches0
	if w.churn != nil {
		rate, err := w.churn.stop()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rate, "churn/s")
	}
	dropped := w.s.r.Dropped() - w.dropped0
	b.ReportMetric(float64(dropped)/float64(b.N), "drops/op")
	if elapsed > 0 {
		b.ReportMetric(float64(delivered)/elapsed.Seconds(), "dgrams/s")
		b.ReportMetric(float64(gcs)/elapsed.Seconds(), "gc/s")
		if w.cpu0 >= 0 {
			b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpus")
			if w.busy0 >= 0 && elapsed >= 100*time.Millisecond { // /proc/stat counts in 10 ms ticks
				other := (busy1 - w.busy0 - cpu).Seconds() / elapsed.Seconds()
				b.ReportMetric(max(other, 0), "other-cpus")
			}
		}
	}
	if batches > 0 {
		b.ReportMetric(float64(delivered)/float64(batches), "dgrams/batch")
	}
	if delivered > 0 {
		// A stable count next to the noisy times: goroutine wake-ups on
		// the datagram path per datagram delivered.
		b.ReportMetric(float64(w.s.r.Wakeups()-w.wakes0)/float64(delivered), "wakes/dgram")
	}
}

// numGC is the number of completed GC cycles. ReadMemStats stops the world;
// it is called outside the timed region only.
func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

// churnRate is the target of session replacements per second for churn=1.
const churnRate = 10_000

// churner replaces sessions through the control plane in the background:
// Add a fresh stream ID, publish it in a random slot, Remove the slot's old
// ID.
type churner struct {
	quit chan struct{}
	done chan struct{}
	ops  int
	secs float64
	err  error
}

func startChurner(s *setup, rate int) *churner {
	c := &churner{quit: make(chan struct{}), done: make(chan struct{})}
	go c.routineChurn(s, rate)
	return c
}

func (c *churner) routineChurn(s *setup, rate int) {
	defer close(c.done)
	const maxPerTick = 100 // bounds the catch-up after a slow tick
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	rnd := newRng(s.nextID)
	start := time.Now()
	defer func() { c.secs = time.Since(start).Seconds() }()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		due := min(int(time.Since(start).Seconds()*float64(rate))-c.ops, maxPerTick)
		for range due {
			slot := rnd.intn(uint64(len(s.ids)))
			id := s.nextID
			s.nextID += 4
			if err := s.r.Add(id, &s.sinks[slot]); err != nil {
				c.err = fmt.Errorf("churn: Add(%d): %w", id, err)
				return
			}
			old := s.ids[slot].Swap(id) // publish the new ID to dispatchers
			if err := s.r.Remove(old); err != nil {
				c.err = fmt.Errorf("churn: Remove(%d): %w", old, err)
				return
			}
			c.ops++
		}
	}
}

// stop ends the churner and returns the replacement rate it achieved.
func (c *churner) stop() (float64, error) {
	close(c.quit)
	<-c.done
	if c.secs == 0 {
		return 0, c.err
	}
	return float64(c.ops) / c.secs, c.err
}
