package baseline

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Every test here runs against every implementation, so that a benchmark
// cannot measure a router that loses, duplicates or misroutes datagrams.

// recorder is a Consumer that keeps what it receives and can be held
// inside HandleDatagrams by a gate.
type recorder struct {
	mu   sync.Mutex
	got  [][]byte
	n    atomic.Int64
	gate chan struct{} // if non-nil, the first batch waits until it is closed
	in   chan struct{} // closed when the first batch arrives
	once sync.Once
}

func newRecorder() *recorder { return &recorder{in: make(chan struct{})} }

// Blocking tells the engine that a gated recorder blocks, so that it gets a
// goroutine of its own instead of stalling an executor worker.
func (c *recorder) Blocking() bool { return c.gate != nil }

func (c *recorder) HandleDatagrams(batch [][]byte) {
	c.once.Do(func() {
		close(c.in)
		if c.gate != nil {
			<-c.gate
		}
	})
	c.mu.Lock()
	for _, d := range batch {
		c.got = append(c.got, append([]byte(nil), d...))
	}
	c.mu.Unlock()
	c.n.Add(int64(len(batch)))
}

func (c *recorder) datagrams() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

// releases counts what a router hands back.
type releases struct{ n atomic.Int64 }

func (r *releases) release(d []byte) {
	if len(d) == 0 {
		panic("released an empty datagram")
	}
	r.n.Add(1)
}

func payload(id uint64, seq int) []byte {
	d := make([]byte, 16)
	binary.LittleEndian.PutUint64(d, id)
	binary.LittleEndian.PutUint64(d[8:], uint64(seq))
	return d
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func forEachImpl(t *testing.T, f func(t *testing.T, im Impl)) {
	for _, im := range Impls {
		t.Run(im.Name, func(t *testing.T) { f(t, im) })
	}
}

const testQueue = 16

func TestDeliversEverythingInOrder(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im Impl) {
		var rel releases
		r := im.New(Config{QueueCap: testQueue, BatchSize: 4, Release: rel.release})
		defer r.Close()
		const sessions = 8
		recs := make([]*recorder, sessions)
		for i := range recs {
			recs[i] = newRecorder()
			require.NoError(t, r.Add(uint64(4*i), recs[i]))
		}
		// testQueue per session, one dispatcher: nothing may drop, even if
		// no consumer runs until the end.
		for seq := range testQueue {
			for i := range recs {
				require.True(t, r.Dispatch(uint64(4*i), payload(uint64(4*i), seq)))
			}
		}
		total := int64(sessions * testQueue)
		eventually(t, "delivery", func() bool { return rel.n.Load() == total })
		require.Zero(t, r.Dropped())
		for i, rec := range recs {
			got := rec.datagrams()
			require.Len(t, got, testQueue, "session %d", i)
			for seq, d := range got {
				require.Equal(t, payload(uint64(4*i), seq), d, "session %d, datagram %d", i, seq)
			}
		}
	})
}

func TestControlPlane(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im Impl) {
		r := im.New(Config{QueueCap: testQueue})
		a, b := newRecorder(), newRecorder()
		require.NoError(t, r.Add(4, a))
		require.NoError(t, r.Add(8, b))
		require.ErrorIs(t, r.Add(4, newRecorder()), ErrExists)
		require.NoError(t, r.Remove(12), "unknown stream")

		// Removed sessions stop receiving; their datagrams are dropped
		// and counted. The others keep receiving.
		require.NoError(t, r.Remove(4))
		for seq := range 10 {
			r.Dispatch(4, payload(4, seq))
			r.Dispatch(8, payload(8, seq))
		}
		eventually(t, "b's datagrams", func() bool { return b.n.Load() == 10 })
		eventually(t, "drops", func() bool { return r.Dropped() == 10 })
		require.Zero(t, a.n.Load())

		// Unknown streams drop too.
		require.False(t, r.Dispatch(16, payload(16, 0)) && im.Name != "singlerouter")
		eventually(t, "drop of unknown", func() bool { return r.Dropped() == 11 })

		// A stream ID can be used again after removal.
		a2 := newRecorder()
		require.NoError(t, r.Add(4, a2))
		r.Dispatch(4, payload(4, 0))
		eventually(t, "new session's datagram", func() bool { return a2.n.Load() == 1 })
		require.Zero(t, a.n.Load())

		r.Close()
		r.Close() // idempotent
		require.ErrorIs(t, r.Add(20, newRecorder()), ErrClosed)
		require.False(t, r.Dispatch(8, payload(8, 0)), "dispatch after close")
	})
}

func TestCountsDrops(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im Impl) {
		var rel releases
		r := im.New(Config{QueueCap: testQueue, BatchSize: 4, Release: rel.release})
		defer r.Close()
		rec := newRecorder()
		rec.gate = make(chan struct{})
		require.NoError(t, r.Add(4, rec))

		// Hold the consumer inside its first batch of one; then the queue
		// takes exactly testQueue more and the rest drop.
		r.Dispatch(4, payload(4, 0))
		<-rec.in
		const extra = 50
		for seq := 1; seq <= testQueue+extra; seq++ {
			r.Dispatch(4, payload(4, seq))
		}
		eventually(t, "drops", func() bool { return r.Dropped() == extra })
		close(rec.gate)
		eventually(t, "delivery", func() bool { return rec.n.Load() == 1+testQueue })
		eventually(t, "releases", func() bool { return rel.n.Load() == 1+testQueue+extra })
		got := rec.datagrams()
		for seq, d := range got {
			require.Equal(t, payload(4, seq), d, "the oldest stay, the newest drop")
		}
		require.EqualValues(t, extra, r.Dropped())
	})
}

func TestCloseReleasesEverything(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im Impl) {
		defer goleak.VerifyNone(t)
		var rel releases
		r := im.New(Config{QueueCap: testQueue, BatchSize: 4, Release: rel.release})
		recs := make([]*recorder, 4)
		sent := 0
		for i := range recs {
			recs[i] = newRecorder()
			recs[i].gate = make(chan struct{})
			require.NoError(t, r.Add(uint64(4*i), recs[i]))
			r.Dispatch(uint64(4*i), payload(uint64(4*i), 0))
			sent++
			<-recs[i].in
			for seq := 1; seq <= testQueue; seq++ {
				r.Dispatch(uint64(4*i), payload(uint64(4*i), seq))
				sent++
			}
		}
		closed := make(chan struct{})
		go func() { r.Close(); close(closed) }()
		time.Sleep(10 * time.Millisecond)
		for _, rec := range recs {
			close(rec.gate)
		}
		<-closed
		var delivered int64
		for _, rec := range recs {
			delivered += rec.n.Load()
		}
		require.EqualValues(t, sent, rel.n.Load(), "every datagram released once")
		require.EqualValues(t, sent, delivered+int64(r.Dropped()), "delivered + dropped")
	})
}

// TestConcurrentChurn runs dispatchers against sessions that come and go and
// checks the books: every datagram delivered or dropped, each released once.
// syncmap and xsync may lose a datagram that races with its session's
// removal (see the package doc); for them the test checks only that nothing
// is delivered or released twice.
func TestConcurrentChurn(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im Impl) {
		var rel releases
		r := im.New(Config{QueueCap: testQueue, BatchSize: 4, Release: rel.release})
		const slots = 32
		var delivered atomic.Int64
		sink := consumerFunc(func(b [][]byte) { delivered.Add(int64(len(b))) })
		var ids [slots]atomic.Uint64
		for i := range ids {
			ids[i].Store(uint64(4 * i))
			require.NoError(t, r.Add(uint64(4*i), sink))
		}
		stop := make(chan struct{})
		var sent atomic.Int64
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := 0
				for i := g; ; i++ {
					select {
					case <-stop:
						sent.Add(int64(n))
						return
					default:
					}
					r.Dispatch(ids[i%slots].Load(), make([]byte, 8))
					n++
					if n%64 == 0 {
						runtime.Gosched()
					}
				}
			}()
		}
		next := uint64(4 * slots)
		for i := range 300 {
			slot := i % slots
			require.NoError(t, r.Add(next, sink))
			old := ids[slot].Swap(next)
			require.NoError(t, r.Remove(old))
			next += 4
		}
		close(stop)
		wg.Wait()
		r.Close()
		accounted := delivered.Load() + int64(r.Dropped())
		require.Equal(t, accounted, rel.n.Load(), "released = delivered + dropped")
		if im.Name == "syncmap" || im.Name == "xsync" {
			require.LessOrEqual(t, accounted, sent.Load())
			if lost := sent.Load() - accounted; lost > 0 {
				t.Logf("%s lost %d of %d datagrams to the removal race", im.Name, lost, sent.Load())
			}
			return
		}
		require.Equal(t, sent.Load(), accounted, "dispatched = delivered + dropped")
	})
}

type consumerFunc func([][]byte)

func (f consumerFunc) HandleDatagrams(b [][]byte) { f(b) }

func TestNew(t *testing.T) {
	for _, im := range Impls {
		r, err := New(im.Name, Config{})
		require.NoError(t, err)
		r.Close()
	}
	_, err := New("nope", Config{})
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrClosed))
	e := NewEngine(Config{})
	defer e.Close()
	require.NotNil(t, Engine(e))
	require.Nil(t, Engine(NewMutexMap(Config{})))
}
