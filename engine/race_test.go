package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// raceKind's Start returns as soon as the test lets it, so that its
// activation races the test's CancelPending.
type raceKind struct {
	go_   chan struct{}
	made  chan *recorder
	begun chan struct{}
}

func (k *raceKind) Start(context.Context, *Session, Args) (Handler, error) {
	gate := k.go_ // read before announcing: the test replaces it after
	k.begun <- struct{}{}
	<-gate
	h := newRecorder()
	k.made <- h
	return h, nil
}

// TestCancelVersusActivateRace races an init's activation against
// CancelPending 100,000 times. Each time exactly one must win: either the
// session is active, StartSession returns it and CancelPending says
// ErrAlreadyActive, or it is cancelled, StartSession says ErrCancelled,
// CancelPending says nil, and the late handler is closed without a datagram.
// goleak (TestMain) checks nothing is left running.
func TestCancelVersusActivateRace(t *testing.T) {
	rounds := 100_000
	if testing.Short() {
		rounds = 10_000
	}
	const workers = 4 // independent routers racing in parallel
	var activated, cancelled atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			k := &raceKind{go_: make(chan struct{}), made: make(chan *recorder, 1), begun: make(chan struct{}, 1)}
			r := NewRouter(Options{Kinds: registryWith("x", k), Logger: discardLogger()})
			defer r.Close()
			for i := w; i < rounds; i += workers {
				if err := raceOnce(r, k, uint64(i)*4); err != nil {
					t.Errorf("round %d: %v", i, err)
					return
				}
				if _, ok := r.Lookup(uint64(i) * 4); ok {
					activated.Add(1)
				} else {
					cancelled.Add(1)
				}
				// Clean up so the router stays small.
				if err := r.Unregister(uint64(i) * 4); err != nil {
					t.Errorf("unregister: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d rounds: activation won %d, cancel won %d", rounds, activated.Load(), cancelled.Load())
	if activated.Load()+cancelled.Load() != int64(rounds) {
		t.Fatalf("outcomes %d + %d != %d rounds", activated.Load(), cancelled.Load(), rounds)
	}
}

func raceOnce(r *Router, k *raceKind, id uint64) error {
	type result struct {
		s   *Session
		err error
	}
	started := make(chan result, 1)
	go func() {
		s, err := r.StartSession(context.Background(), id, Args{})
		started <- result{s, err}
	}()
	<-k.begun
	cancelErr := make(chan error, 1)
	// Alternate which side is set off first so both win often.
	if id%8 == 0 {
		go func() { cancelErr <- r.CancelPending(id) }()
		close(k.go_)
	} else {
		close(k.go_)
		go func() { cancelErr <- r.CancelPending(id) }()
	}
	k.go_ = make(chan struct{})
	h := <-k.made
	ce := <-cancelErr
	res := <-started

	switch {
	case ce == nil:
		// Cancel won.
		if !errors.Is(res.err, ErrCancelled) || res.s != nil {
			return errors.Join(errors.New("cancel won but StartSession returned"), res.err)
		}
		<-h.closed
		if !errors.Is(h.closeReason(), ErrCancelled) {
			return errors.New("late handler not closed with ErrCancelled")
		}
		if len(h.datagrams()) != 0 {
			return errors.New("late handler received datagrams")
		}
		if _, ok := r.Lookup(id); ok {
			return errors.New("cancelled session still routed")
		}
	case errors.Is(ce, ErrAlreadyActive):
		// Activation won.
		if res.err != nil || res.s == nil || res.s.State() != StateActive {
			return errors.Join(errors.New("activation won but StartSession failed"), res.err)
		}
		if h.closeCount() != 0 {
			return errors.New("winning handler was closed")
		}
	default:
		return errors.Join(errors.New("CancelPending returned an unexpected error"), ce)
	}
	return nil
}
