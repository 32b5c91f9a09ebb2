package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// nopHandler counts and discards.
type nopHandler struct{ n atomic.Uint64 }

func (h *nopHandler) HandleDatagrams(b [][]byte) { h.n.Add(uint64(len(b))) }
func (h *nopHandler) Close(error)                {}

func TestDispatchDoesNotAllocate(t *testing.T) {
	// The ring holds every push of the measurement (AllocsPerRun runs f
	// once more to warm up), so each one takes the fast path whether or
	// not the handler keeps up: what is measured is Queued, not a drop.
	const runs = 10_000
	r := newTestRouter(t, Options{RingSize: 2 * runs})
	h := &nopHandler{}
	_, err := r.Register(0, h)
	require.NoError(t, err)
	d := make([]byte, 1200)

	notQueued := 0
	allocs := testing.AllocsPerRun(runs, func() {
		if r.Dispatch(0, d) != Queued {
			notQueued++
		}
	})
	require.Zero(t, notQueued, "Dispatch did not take the fast path")
	require.Zero(t, allocs, "Dispatch to an active session allocated")

	// The slow paths do not allocate either.
	require.Zero(t, testing.AllocsPerRun(1000, func() { r.Dispatch(4, d) }), "unknown stream")
	pending := newGateKind()
	r2 := newTestRouter(t, Options{PendingBuffer: 1, Kinds: registryWith("x", pending)})
	done := make(chan error, 1)
	go func() { _, err := r2.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-pending.started
	require.Zero(t, testing.AllocsPerRun(1000, func() { r2.Dispatch(0, d) }), "pending overflow")
	pending.release <- gateOutcome{}
	require.NoError(t, <-done)
}

// TestConcurrentDispatchAccounting has several dispatchers share one router
// while sessions come and go; at the end every datagram is accounted for.
func TestConcurrentDispatchAccounting(t *testing.T) {
	r := newTestRouter(t, Options{RingSize: 8, Kinds: registryWith("x", instantKind{})})
	const streams = 16
	for i := range streams {
		_, err := r.Register(uint64(i)*4, &nopHandler{})
		require.NoError(t, err)
	}
	var sent atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for d := range 4 {
		wg.Go(func() {
			payload := []byte("x")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r.Dispatch(uint64((i*7+d)%(streams+4))*4, payload)
				sent.Add(1)
			}
		})
	}
	// Churn: end and restart sessions while datagrams flow.
	for i := range 300 {
		id := uint64(i%streams) * 4
		require.NoError(t, r.Unregister(id))
		if i%2 == 0 {
			_, err := r.StartSession(context.Background(), id, Args{})
			require.NoError(t, err)
		} else {
			_, err := r.Register(id, &nopHandler{})
			require.NoError(t, err)
		}
	}
	close(stop)
	wg.Wait()
	for i := range streams {
		require.NoError(t, r.Unregister(uint64(i)*4))
	}
	// Unregistered sessions finish their teardown asynchronously.
	waitFor(t, "teardowns", func() bool {
		st := r.Stats()
		return st.Dispatched == sent.Load() && st.Delivered+st.Dropped() == sent.Load()
	})
	st := checkAccounting(t, r, sent.Load())
	t.Logf("sent %d: delivered %d, unknown %d, ring full %d, closed %d",
		sent.Load(), st.Delivered, st.DroppedUnknown, st.DroppedRingFull, st.DroppedClosed)
}

// TestInitTimeoutDefault runs in a synctest bubble so the default 30 s init
// timeout passes in virtual time.
func TestInitTimeoutDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newGateKind()
		r := NewRouter(Options{Kinds: registryWith("x", k), Logger: discardLogger()})
		defer r.Close()
		begin := time.Now()
		done := make(chan error, 1)
		go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
		<-k.started
		err := <-done
		require.ErrorIs(t, err, ErrInitTimeout)
		require.ErrorIs(t, err, ErrInitFailed)
		require.Equal(t, DefaultInitTimeout, time.Since(begin))
		require.Error(t, <-k.ctxErr)
		synctest.Wait()
		_, ok := r.Lookup(0)
		require.False(t, ok)
	})
}

// A Start that ignores its context still cannot hold the starter past the
// init timeout.
func TestInitTimeoutWithStubbornKind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &stubbornKind{entered: make(chan struct{}), proceed: make(chan struct{}), made: make(chan *recorder, 1)}
		r := NewRouter(Options{InitTimeout: 5 * time.Second, Kinds: registryWith("x", k), Logger: discardLogger()})
		begin := time.Now()
		_, err := r.StartSession(context.Background(), 0, Args{})
		require.ErrorIs(t, err, ErrInitTimeout)
		require.Equal(t, 5*time.Second, time.Since(begin))
		close(k.proceed)
		h := <-k.made
		<-h.closed // the late handler is torn down
		r.Close()
	})
}

func TestPullModeSession(t *testing.T) {
	r := newTestRouter(t, Options{})
	s, err := r.Register(0, nil)
	require.NoError(t, err)
	buf := make([][]byte, 4)
	require.Zero(t, s.pop(buf))
	require.True(t, s.arm(), "empty ring: may park")

	for i := range 6 {
		require.Equal(t, Queued, r.Dispatch(0, []byte(fmt.Sprint(i))))
	}
	select {
	case <-s.notify():
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up on the empty → non-empty edge")
	}
	s.disarm()
	require.Equal(t, 4, s.pop(buf))
	require.Equal(t, "0", string(buf[0]))
	require.Equal(t, 2, s.pop(buf))
	require.Equal(t, "5", string(buf[1]))
	require.True(t, s.arm(), "ring drained: may park again")
	s.disarm()

	require.Equal(t, Queued, r.Dispatch(0, []byte("left behind")))
	require.NoError(t, r.Unregister(0))
	<-s.Done()
	require.ErrorIs(t, s.Err(), ErrUnregistered)
	require.Zero(t, s.pop(buf))
	st := checkAccounting(t, r, 7)
	require.Equal(t, uint64(6), st.Delivered)
	require.Equal(t, uint64(1), st.DroppedClosed)
}

func TestSessionCloseFromHandler(t *testing.T) {
	r := newTestRouter(t, Options{})
	h := &closingHandler{recorder: newRecorder()}
	s, err := r.Register(0, h)
	require.NoError(t, err)
	h.s = s
	r.Dispatch(0, []byte("bye"))
	<-h.closed
	require.ErrorIs(t, h.closeReason(), errBoom)
	require.ErrorIs(t, s.Err(), errBoom)
	_, ok := r.Lookup(0)
	require.False(t, ok)
}

type closingHandler struct {
	*recorder
	s *Session
}

func (h *closingHandler) HandleDatagrams(b [][]byte) {
	h.recorder.HandleDatagrams(b)
	h.s.CloseWithError(errBoom)
}

func TestHandlerPanicClosesSession(t *testing.T) {
	r := newTestRouter(t, Options{})
	h := &panickyHandler{recorder: newRecorder()}
	_, err := r.Register(0, h)
	require.NoError(t, err)
	r.Dispatch(0, []byte("x"))
	<-h.closed
	require.ErrorContains(t, h.closeReason(), "handler panic")
	// The router still works.
	other := newRecorder()
	_, err = r.Register(4, other)
	require.NoError(t, err)
	r.Dispatch(4, []byte("y"))
	<-other.arrived
}

type panickyHandler struct{ *recorder }

func (h *panickyHandler) HandleDatagrams([][]byte) { panic("handler bug") }

// BenchmarkDispatch measures the data plane alone: one active session, the
// consumer draining it, one or GOMAXPROCS dispatchers (-cpu). The comparison
// against the baselines is bench.BenchmarkDispatch.
func BenchmarkDispatch(b *testing.B) {
	for _, sessions := range []int{1, 1000} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			r := NewRouter(Options{RingSize: 256, Logger: discardLogger()})
			defer r.Close()
			h := &nopHandler{}
			for i := range sessions {
				if _, err := r.Register(uint64(i)*4, h); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				d := make([]byte, 1200)
				i := uint64(0)
				for pb.Next() {
					r.Dispatch(i%uint64(sessions)*4, d)
					i++
				}
			})
			b.StopTimer()
			st := r.Stats()
			b.ReportMetric(float64(st.Dropped())/float64(b.N), "drops/op")
		})
	}
}
