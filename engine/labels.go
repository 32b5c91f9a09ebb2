package engine

import (
	"context"
	"runtime/pprof"
	"strconv"
	"sync"
)

// Profiler labels: a CPU or goroutine profile splits the executor's work by
// session kind and worker. Each worker goroutine carries the labels
// {worker: i} while idle and {kind: K, worker: i} while it runs a turn of
// a session of kind K (the session's protocol, "registered" for a session
// registered without one); a dedicated session's goroutine carries
// {kind: K, worker: dedicated}.
//
// The label contexts are made once per (worker, kind) when a session is
// placed, on the control plane, and kept by the worker; a turn switches
// with pprof.SetGoroutineLabels only when the kind differs from the last
// turn's, which allocates nothing (pprof.Do would allocate three times per
// call).

// registeredKind is the kind label of a session registered without a
// protocol.
const registeredKind = "registered"

// workerLabels are a worker's label contexts. The worker reads them on its
// goroutine; placements add to them from any router's control plane.
type workerLabels struct {
	id   string          // the worker label: its index
	idle context.Context // {worker: id}

	mu     sync.Mutex           // guards byKind
	byKind map[string]*labelSet // {kind, worker: id}
}

// A labelSet is a label context made once; sessions and workers compare
// their pointers to skip a switch to the labels already set.
type labelSet struct{ ctx context.Context }

func (l *workerLabels) init(i int) {
	l.id = strconv.Itoa(i)
	l.idle = pprof.WithLabels(context.Background(), pprof.Labels("worker", l.id))
	l.byKind = make(map[string]*labelSet)
}

// forKind returns the label context of kind on this worker, making it on
// first use. Called when a session is placed, not per datagram.
func (l *workerLabels) forKind(kind string) *labelSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.byKind[kind]
	if !ok {
		ls = &labelSet{pprof.WithLabels(context.Background(), pprof.Labels("kind", kind, "worker", l.id))}
		l.byKind[kind] = ls
	}
	return ls
}

// kindLabel is the kind label of a session of protocol.
func kindLabel(protocol string) string {
	if protocol == "" {
		return registeredKind
	}
	return protocol
}

// dedicatedLabels is the label context of a dedicated session's goroutine.
func dedicatedLabels(protocol string) context.Context {
	return pprof.WithLabels(context.Background(), pprof.Labels("kind", kindLabel(protocol), "worker", "dedicated"))
}
