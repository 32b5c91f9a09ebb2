package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a Handler that records what it receives.
type recorder struct {
	mu      sync.Mutex
	got     [][]byte
	closed  chan struct{}
	reason  error
	nClose  int
	arrived chan struct{} // gets a token per batch, never blocks
}

func newRecorder() *recorder {
	return &recorder{closed: make(chan struct{}), arrived: make(chan struct{}, 1)}
}

func (h *recorder) HandleDatagrams(b [][]byte) {
	h.mu.Lock()
	for _, d := range b {
		h.got = append(h.got, append([]byte(nil), d...))
	}
	h.mu.Unlock()
	select {
	case h.arrived <- struct{}{}:
	default:
	}
}

func (h *recorder) Close(reason error) {
	h.mu.Lock()
	h.nClose++
	h.reason = reason
	n := h.nClose
	h.mu.Unlock()
	if n == 1 {
		close(h.closed)
	}
}

func (h *recorder) datagrams() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.got...)
}

func (h *recorder) closeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nClose
}

func (h *recorder) closeReason() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reason
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gateKind is a Kind whose Start announces itself and then waits for the
// test to say how it ends.
type gateKind struct {
	started chan *Session    // receives each session whose Start began
	release chan gateOutcome // one outcome per Start
	handler func() *recorder // makes the handler Start returns
	made    chan *recorder   // receives each handler made
	ctxErr  chan error       // receives ctx.Err() when Start returns by ctx
}

type gateOutcome struct {
	err   error
	panic bool
}

func newGateKind() *gateKind {
	return &gateKind{
		started: make(chan *Session, 16),
		release: make(chan gateOutcome, 16),
		made:    make(chan *recorder, 16),
		ctxErr:  make(chan error, 16),
		handler: newRecorder,
	}
}

func (k *gateKind) Start(ctx context.Context, s *Session, _ Args) (Handler, error) {
	k.started <- s
	select {
	case o := <-k.release:
		if o.panic {
			panic("gateKind: told to panic")
		}
		if o.err != nil {
			return nil, o.err
		}
		h := k.handler()
		k.made <- h
		return h, nil
	case <-ctx.Done():
		k.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
}

// instantKind starts sessions at once with a fresh recorder.
type instantKind struct{ made chan *recorder }

func (k instantKind) Start(context.Context, *Session, Args) (Handler, error) {
	h := newRecorder()
	if k.made != nil {
		k.made <- h
	}
	return h, nil
}

func registryWith(protocol string, k Kind) *Registry {
	reg := NewRegistry()
	reg.Register(protocol, k)
	reg.SetDefault(protocol)
	return reg
}

func newTestRouter(t testing.TB, opts Options) *Router {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	r := NewRouter(opts)
	t.Cleanup(func() { r.Close() })
	return r
}

var errBoom = errors.New("boom")

// checkAccounting asserts the Stats identity at quiescence and that the
// router saw exactly the dispatches the test made.
func checkAccounting(t testing.TB, r *Router, dispatched uint64) Stats {
	t.Helper()
	st := r.Stats()
	if st.Dispatched != dispatched {
		t.Fatalf("Stats.Dispatched = %d, test dispatched %d (stats %+v)", st.Dispatched, dispatched, st)
	}
	if sum := st.Delivered + st.Queued + st.HeldNow + st.Dropped(); sum != st.Dispatched {
		t.Fatalf("delivered %d + queued %d + held %d + dropped %d = %d, dispatched %d (stats %+v)",
			st.Delivered, st.Queued, st.HeldNow, st.Dropped(), sum, st.Dispatched, st)
	}
	return st
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
