package baseline

import (
	"io"
	"log/slog"

	"github.com/masqroute/masqroute/engine"
)

// engineRouter adapts masqroute's engine.Router to Router: Add is Register,
// Remove is Unregister, Dispatch is Dispatch. Sessions run on the engine's
// executor (GOMAXPROCS workers; ring batch pop, a worker parks only when no
// session has work).
type engineRouter struct {
	r    *engine.Router
	exec *engine.Executor
}

// NewEngine returns masqroute's engine.Router behind the Router interface.
// Config.QueueCap is the ring size, Config.BatchSize the handler batch.
func NewEngine(cfg Config) Router {
	cfg = cfg.withDefaults()
	exec := engine.NewExecutor(0)
	return &engineRouter{exec: exec, r: engine.NewRouter(engine.Options{
		RingSize:  cfg.QueueCap,
		BatchSize: cfg.BatchSize,
		Release:   cfg.Release,
		Executor:  exec,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})}
}

// Engine returns the engine.Router behind r, for tests that call it
// directly; nil if r is not the engine adapter.
func Engine(r Router) *engine.Router {
	if e, ok := r.(*engineRouter); ok {
		return e.r
	}
	return nil
}

// handler adapts a Consumer to engine.Handler. A Consumer that may block
// says so with a Blocking method, as an engine.BlockingHandler does.
type handler struct{ c Consumer }

func (h handler) HandleDatagrams(batch [][]byte) { h.c.HandleDatagrams(batch) }
func (h handler) Close(error)                    {}
func (h handler) Blocking() bool {
	b, ok := h.c.(interface{ Blocking() bool })
	return ok && b.Blocking()
}

func (e *engineRouter) Add(streamID uint64, c Consumer) error {
	_, err := e.r.Register(streamID, handler{c})
	switch err {
	case engine.ErrStreamExists:
		return ErrExists
	case engine.ErrRouterClosed:
		return ErrClosed
	}
	return err
}

func (e *engineRouter) Remove(streamID uint64) error {
	if err := e.r.Unregister(streamID); err == engine.ErrRouterClosed {
		return ErrClosed
	}
	return nil
}

func (e *engineRouter) Dispatch(streamID uint64, d []byte) bool {
	return e.r.Dispatch(streamID, d) == engine.Queued
}

// Dropped sums the engine's drop counters. engine.Router.Stats walks every
// live session, so this costs O(sessions); benchmarks call it outside the
// timed region.
func (e *engineRouter) Dropped() uint64 { return e.r.Stats().Dropped() }

// Wakeups counts the executor's worker wake-ups: the engine's sessions
// have no goroutines of their own.
func (e *engineRouter) Wakeups() uint64 { return e.exec.Stats().Wakeups }

func (e *engineRouter) Close() {
	_ = e.r.Close()
	e.exec.Close()
}
