package engine

import (
	"bytes"
	"context"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// handlerKind starts every session with the same Handler.
type handlerKind struct{ h Handler }

func (k handlerKind) Start(context.Context, *Session, Args) (Handler, error) { return k.h, nil }

// goroutineLabels returns the label lines of the goroutine profile.
func goroutineLabels(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&b, 1))
	var lines []string
	for l := range strings.Lines(b.String()) {
		if strings.Contains(l, "# labels:") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n")
}

// TestWorkerProfilerLabels: a worker running a session's turn carries the
// session's kind and its own index; idle, its index alone.
func TestWorkerProfilerLabels(t *testing.T) {
	exec := NewExecutor(2)
	t.Cleanup(exec.Close)
	gate := &gateHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	reg := NewRegistry()
	reg.Register("connect-test", handlerKind{gate})
	r := newTestRouter(t, Options{Executor: exec, Kinds: reg})
	s, err := r.StartSession(context.Background(), 0, Args{Protocol: "connect-test"})
	require.NoError(t, err)
	worker := s.worker.labels.id

	require.Equal(t, Queued, r.Dispatch(0, []byte("x")))
	<-gate.entered // the worker is in the session's turn now
	labels := goroutineLabels(t)
	require.Contains(t, labels, `{"kind":"connect-test", "worker":"`+worker+`"}`)
	idle := `{"worker":"1"}`
	if worker == "1" {
		idle = `{"worker":"0"}`
	}
	require.Contains(t, labels, idle, "the other worker, idle")
	released = true
	close(gate.release)
}

// countHandler counts datagrams.
type countHandler struct{ n atomic.Uint64 }

func (h *countHandler) HandleDatagrams(b [][]byte) { h.n.Add(uint64(len(b))) }
func (h *countHandler) Close(error)                {}

// TestWorkerTurnsDoNotAllocate: turns that switch labels between two kinds
// on one worker (and sample queue delays) allocate nothing.
func TestWorkerTurnsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	exec := NewExecutor(1)
	t.Cleanup(exec.Close)
	ha, hb := &countHandler{}, &countHandler{}
	reg := NewRegistry()
	reg.Register("kind-a", handlerKind{ha})
	reg.Register("kind-b", handlerKind{hb})
	r := newTestRouter(t, Options{Executor: exec, Kinds: reg, RingSize: 2})
	_, err := r.StartSession(context.Background(), 0, Args{Protocol: "kind-a"})
	require.NoError(t, err)
	_, err = r.StartSession(context.Background(), 4, Args{Protocol: "kind-b"})
	require.NoError(t, err)
	d := make([]byte, 64)
	i := uint64(0)
	wait := func(h *countHandler, n uint64) {
		for h.n.Load() < n {
			runtime.Gosched()
		}
	}
	allocs := testing.AllocsPerRun(2000, func() {
		i++
		require.Equal(t, Queued, r.Dispatch(0, d))
		wait(ha, i)
		require.Equal(t, Queued, r.Dispatch(4, d))
		wait(hb, i)
	})
	require.Zero(t, allocs)
	require.NotZero(t, exec.Stats().QueueDelay.Count(), "samples were taken")
}
