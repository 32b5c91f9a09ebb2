package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// FuzzRouter drives one Router with a random interleaving of StartSession,
// init outcomes, CancelPending, Register, Unregister, Reset, Dispatch and
// Close, and checks every result against a simple reference model: a map
// from stream to state. At the end it checks the accounting identity, that
// every handler was closed exactly once and received exactly the datagrams
// the model says, and (through goleak in TestMain) that no goroutine is
// left.
func FuzzRouter(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 0, 3, 1, 0, 0, 5, 0, 2})
	f.Add([]byte{0, 1, 0, 2, 1, 0, 1, 1, 1, 5, 1, 4, 6, 0, 0})
	f.Add([]byte{3, 2, 0, 5, 2, 7, 4, 2, 0, 5, 2, 1, 0, 2, 0, 1, 2, 2})
	f.Add([]byte{0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 0, 7, 0, 5, 3, 3, 1, 3, 0})
	f.Add([]byte{0, 0, 0, 2, 0, 0, 1, 0, 0, 5, 0, 9, 4, 0, 0, 5, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 3*64 {
			ops = ops[:3*64]
		}
		h := newRouterHarness(t)
		defer h.close()
		for len(ops) >= 3 {
			op, id, arg := ops[0]%8, uint64(ops[1]%6)*4, ops[2]
			ops = ops[3:]
			h.step(op, id, arg)
			if t.Failed() {
				return
			}
		}
	})
}

const (
	fuzzMaxTunnels    = 4
	fuzzPendingBuffer = 3
)

type modelState uint8

const (
	modelNone modelState = iota
	modelPending
	modelActive
)

// modelSession is the reference model's view of one stream, plus the
// harness's handles on the real session.
type modelSession struct {
	state    modelState
	queued   int // datagrams the model says the session holds or was handed
	gate     chan gateOutcome
	result   chan error // StartSession's error
	handlers *fuzzHandlers
}

type routerHarness struct {
	t        *testing.T
	r        *Router
	model    map[uint64]*modelSession
	handlers fuzzHandlers
	started  chan uint64 // kind.Start entered, by stream
	sent     uint64
	closed   bool
}

// fuzzHandlers records every handler the kind made.
type fuzzHandlers struct {
	mu   sync.Mutex
	all  []*fuzzHandler
	byID map[uint64][]*fuzzHandler
}

type fuzzHandler struct {
	id       uint64
	mu       sync.Mutex
	got      int
	closes   int
	expected int // datagrams it must have received, per the model; -1 unknown
}

func (h *fuzzHandler) HandleDatagrams(b [][]byte) {
	h.mu.Lock()
	h.got += len(b)
	h.mu.Unlock()
}

func (h *fuzzHandler) Close(error) {
	h.mu.Lock()
	h.closes++
	h.mu.Unlock()
}

func newRouterHarness(t *testing.T) *routerHarness {
	h := &routerHarness{t: t, model: make(map[uint64]*modelSession), started: make(chan uint64, 16)}
	h.handlers.byID = make(map[uint64][]*fuzzHandler)
	kind := KindFunc(func(ctx context.Context, s *Session, args Args) (Handler, error) {
		gate := args.Value.(chan gateOutcome)
		h.started <- s.StreamID()
		select {
		case o := <-gate:
			if o.panic {
				panic("fuzz kind panics")
			}
			if o.err != nil {
				return nil, o.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		fh := &fuzzHandler{id: s.StreamID(), expected: -1}
		h.handlers.add(fh)
		return fh, nil
	})
	h.r = NewRouter(Options{
		MaxTunnels:    fuzzMaxTunnels,
		PendingBuffer: fuzzPendingBuffer,
		RingSize:      1024,
		Kinds:         registryWith("x", kind),
		Logger:        discardLogger(),
	})
	return h
}

func (fh *fuzzHandlers) add(h *fuzzHandler) {
	fh.mu.Lock()
	fh.all = append(fh.all, h)
	fh.byID[h.id] = append(fh.byID[h.id], h)
	fh.mu.Unlock()
}

// latest returns the newest handler made for id.
func (fh *fuzzHandlers) latest(id uint64) *fuzzHandler {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	hs := fh.byID[id]
	if len(hs) == 0 {
		return nil
	}
	return hs[len(hs)-1]
}

func (h *routerHarness) live() int {
	n := 0
	for _, m := range h.model {
		if m.state != modelNone {
			n++
		}
	}
	return n
}

func (h *routerHarness) get(id uint64) *modelSession {
	m := h.model[id]
	if m == nil {
		m = &modelSession{}
		h.model[id] = m
	}
	return m
}

func (h *routerHarness) fail(format string, args ...any) {
	h.t.Helper()
	h.t.Errorf(format, args...)
}

func (h *routerHarness) waitResult(m *modelSession) error {
	select {
	case err := <-m.result:
		return err
	case <-time.After(5 * time.Second):
		h.fail("StartSession did not return")
		return nil
	}
}

// settle waits until the newest handler of the active session id has
// received every datagram the model queued for it, and records that as what
// it must end with. Ending a session discards what its ring still holds, so
// the harness lets the consumer catch up first to keep the model exact.
func (h *routerHarness) settle(id uint64, m *modelSession) {
	fh := h.handlers.latest(id)
	if fh == nil {
		h.fail("active %d has no handler", id)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fh.mu.Lock()
		got := fh.got
		fh.mu.Unlock()
		if got >= m.queued || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	fh.mu.Lock()
	fh.expected = m.queued
	fh.mu.Unlock()
}

func (h *routerHarness) step(op byte, id uint64, arg byte) {
	if h.closed {
		return
	}
	m := h.get(id)
	switch op {
	case 0: // StartSession
		switch {
		case m.state != modelNone:
			_, err := h.r.StartSession(context.Background(), id, Args{Value: make(chan gateOutcome)})
			if !errors.Is(err, ErrStreamExists) {
				h.fail("start %d on a live stream: %v", id, err)
			}
		case h.live() >= fuzzMaxTunnels:
			_, err := h.r.StartSession(context.Background(), id, Args{Value: make(chan gateOutcome)})
			if !errors.Is(err, ErrTooManyTunnels) {
				h.fail("start %d over the limit: %v", id, err)
			}
		default:
			m.gate = make(chan gateOutcome, 1)
			m.result = make(chan error, 1)
			go func(gate chan gateOutcome, res chan error) {
				_, err := h.r.StartSession(context.Background(), id, Args{Value: gate})
				res <- err
			}(m.gate, m.result)
			select {
			case got := <-h.started:
				if got != id {
					h.fail("init started for %d, expected %d", got, id)
				}
			case err := <-m.result:
				h.fail("start %d refused, model says it starts: %v", id, err)
				return
			case <-time.After(5 * time.Second):
				h.fail("init for %d never started", id)
				return
			}
			m.state, m.queued = modelPending, 0
		}
	case 1: // the pending init ends: ok, error or panic
		if m.state != modelPending {
			return
		}
		o := gateOutcome{}
		switch arg % 3 {
		case 1:
			o.err = errBoom
		case 2:
			o.panic = true
		}
		m.gate <- o
		err := h.waitResult(m)
		if arg%3 == 0 {
			if err != nil {
				h.fail("init ok for %d but StartSession: %v", id, err)
			}
			m.state = modelActive
		} else {
			if !errors.Is(err, ErrInitFailed) {
				h.fail("init failed for %d but StartSession: %v", id, err)
			}
			m.state = modelNone
		}
	case 2: // CancelPending
		err := h.r.CancelPending(id)
		switch m.state {
		case modelPending:
			if err != nil {
				h.fail("cancel pending %d: %v", id, err)
			}
			if err := h.waitResult(m); !errors.Is(err, ErrCancelled) {
				h.fail("cancelled %d but StartSession: %v", id, err)
			}
			m.state = modelNone
		case modelActive:
			if !errors.Is(err, ErrAlreadyActive) {
				h.fail("cancel active %d: %v", id, err)
			}
		default:
			if err != nil {
				h.fail("cancel unknown %d: %v", id, err)
			}
		}
	case 3: // Register
		fh := &fuzzHandler{id: id, expected: -1}
		_, err := h.r.Register(id, fh)
		switch {
		case m.state != modelNone:
			if !errors.Is(err, ErrStreamExists) {
				h.fail("register live %d: %v", id, err)
			}
		case h.live() >= fuzzMaxTunnels:
			if !errors.Is(err, ErrTooManyTunnels) {
				h.fail("register %d over the limit: %v", id, err)
			}
		default:
			if err != nil {
				h.fail("register %d: %v", id, err)
				return
			}
			h.handlers.add(fh)
			m.state, m.queued = modelActive, 0
		}
	case 4, 5: // Unregister, Reset
		if m.state == modelActive {
			h.settle(id, m)
		}
		var err error
		want := ErrUnregistered
		if op == 4 {
			err = h.r.Unregister(id)
		} else {
			err, want = h.r.Reset(id), ErrStreamReset
		}
		if err != nil {
			h.fail("end %d: %v", id, err)
		}
		switch m.state {
		case modelPending:
			if err := h.waitResult(m); !errors.Is(err, want) {
				h.fail("ended pending %d but StartSession: %v", id, err)
			}
		}
		m.state = modelNone
	case 6: // Dispatch a few datagrams
		n := int(arg%5) + 1
		for range n {
			res := h.r.Dispatch(id, []byte{byte(id)})
			h.sent++
			want := DroppedUnknown
			switch m.state {
			case modelPending:
				want = DroppedPendingOverflow
				if m.queued < fuzzPendingBuffer {
					want = Queued
					m.queued++
				}
			case modelActive:
				want = Queued
				m.queued++
			}
			if res != want {
				h.fail("dispatch to %d (%v): %v, model says %v", id, m.state, res, want)
			}
		}
	case 7: // Close, rarely
		if arg%8 == 0 {
			h.close()
		}
	}
}

// close ends the router and checks the end state.
func (h *routerHarness) close() {
	if h.closed {
		return
	}
	h.closed = true
	for id, m := range h.model {
		if m.state == modelActive {
			h.settle(id, m)
		}
	}
	h.r.Close()
	for id, m := range h.model {
		if m.state == modelPending {
			if err := h.waitResult(m); !errors.Is(err, ErrRouterClosed) {
				h.fail("pending %d at Close: %v", id, err)
			}
		}
	}
	st := h.r.Stats()
	if st.Dispatched != h.sent {
		h.fail("Dispatched %d, harness sent %d", st.Dispatched, h.sent)
	}
	if sum := st.Delivered + st.Queued + st.Dropped(); sum != st.Dispatched {
		h.fail("accounting: delivered %d + queued %d + dropped %d != dispatched %d", st.Delivered, st.Queued, st.Dropped(), st.Dispatched)
	}
	if st.Active != 0 || st.Pending != 0 {
		h.fail("after Close: %d active, %d pending", st.Active, st.Pending)
	}
	h.handlers.mu.Lock()
	defer h.handlers.mu.Unlock()
	for _, fh := range h.handlers.all {
		fh.mu.Lock()
		if fh.closes != 1 {
			h.fail("handler of %d closed %d times", fh.id, fh.closes)
		}
		if fh.expected >= 0 && fh.got != fh.expected {
			h.fail("handler of %d got %d datagrams, model says %d", fh.id, fh.got, fh.expected)
		}
		fh.mu.Unlock()
	}
}

func (s modelState) String() string {
	return [...]string{"none", "pending", "active"}[s]
}
