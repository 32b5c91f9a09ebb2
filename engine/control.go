package engine

import (
	"context"
	"time"
)

// The control plane: one goroutine per router, routineControl, owns every
// write to the session map and the live-session count. Public methods send
// it a ctlMsg; Dispatch never does. The transitions it makes (pending →
// cancelled, active → closed) are compare-and-swaps on the session's state
// word, because the init goroutine makes the competing ones (pending →
// active, pending → failed) without asking it.
//
// Naming: a method called ctlFoo runs only on the control-plane goroutine
// (routineControl, or the shutdown it ends with). That goroutine is the
// single writer of the session map, of Router.live and of the hold queue's
// list, and being on it is what serializes these methods: they take no
// lock, so calling one from any other goroutine is a data race. (fooLocked
// would say a mutex is held; none is.) The hold queue's ctl methods are in
// hold.go.

type ctlOp uint8

const (
	opStart      ctlOp = iota // create a pending session and run its init
	opRegister                // create an active session
	opCancel                  // pending → cancelled, by stream ID
	opEnd                     // end a pending or active session, by stream ID
	opEndSession              // end this *Session (if it is still the one routed)
	opForget                  // remove a failed session from the map
)

type ctlMsg struct {
	op      ctlOp
	id      uint64
	s       *Session
	kind    Kind
	args    Args
	handler Handler
	reason  error
	reply   chan ctlReply // buffered(1); nil when no answer is wanted
}

type ctlReply struct {
	s       *Session
	err     error // the operation's result (CancelPending)
	callErr error // the call itself failed
}

// routineControl is the body of the router's control-plane goroutine.
func (r *Router) routineControl() {
	defer r.wg.Done()
	log := r.opts.Logger
	log.Debug("masqroute: router control plane started")
	defer log.Debug("masqroute: router control plane stopped")

	var holdTimer *time.Timer
	var holdC <-chan time.Time
	var holdWake <-chan struct{}
	if r.hold != nil {
		holdTimer = time.NewTimer(time.Hour)
		holdTimer.Stop()
		holdWake = r.hold.notify()
	}
	for {
		if r.hold != nil {
			holdC = r.ctlArmHold(holdTimer)
		}
		select {
		case m := <-r.ctl:
			r.ctlHandle(m)
		case <-holdWake:
			r.hold.disarm()
		case <-holdC:
		case <-r.stopping:
			if holdTimer != nil {
				holdTimer.Stop()
			}
			r.ctlShutdown()
			return
		}
	}
}

// ctlHandle performs one control request.
func (r *Router) ctlHandle(m ctlMsg) {
	var res ctlReply
	switch m.op {
	case opStart:
		res.s, res.callErr = r.ctlStart(m.id, m.kind, m.args)
	case opRegister:
		res.s, res.callErr = r.ctlRegister(m.id, m.handler)
	case opCancel:
		if s := r.sessions.Load(m.id); s != nil && !r.ctlCancel(s, m.reason) &&
			s.state.load() == StateActive {
			res.err = ErrAlreadyActive
		}
	case opEnd:
		if s := r.sessions.Load(m.id); s != nil {
			r.ctlEnd(s, m.reason)
		}
	case opEndSession:
		r.ctlEnd(m.s, m.reason)
	case opForget:
		r.ctlForget(m.s)
	}
	if m.reply != nil {
		m.reply <- res
	}
}

// ctlAdmit decides whether a session for id may be created. A stream
// that already has a session is refused as such even at the tunnel limit:
// the more specific reason wins (found by FuzzRouter).
func (r *Router) ctlAdmit(id uint64) error {
	if r.sessions.Load(id) != nil {
		r.counters.rejectedExists.Add(1)
		return ErrStreamExists
	}
	if r.opts.MaxTunnels > 0 && r.live >= r.opts.MaxTunnels {
		r.counters.rejectedLimit.Add(1)
		return ErrTooManyTunnels
	}
	return nil
}

func (r *Router) ctlStart(id uint64, kind Kind, args Args) (*Session, error) {
	if err := r.ctlAdmit(id); err != nil {
		return nil, err
	}
	s := newSession(r, id, args.Protocol, StatePending, r.opts.PendingBuffer, false)
	ctx, cancel := context.WithTimeout(r.baseCtx, r.opts.InitTimeout)
	s.initCancel = cancel
	r.ctlInsert(s)
	r.counters.started.Add(1)
	r.counters.pending.Add(1)
	r.wg.Add(1)
	go s.routineInit(ctx, kind, args)
	return s, nil
}

func (r *Router) ctlRegister(id uint64, h Handler) (*Session, error) {
	if err := r.ctlAdmit(id); err != nil {
		return nil, err
	}
	s := newSession(r, id, "", StateActive, r.opts.RingSize, h == nil)
	s.handler = h
	if b, ok := h.(BlockingHandler); ok && b.Blocking() {
		s.dedicated = make(chan struct{}, 1)
	}
	close(s.ready)
	r.ctlInsert(s)
	r.counters.registered.Add(1)
	r.counters.active.Add(1)
	if h != nil {
		r.wg.Add(1) // the session's run; finish ends it
		s.run()
	}
	return s, nil
}

// ctlInsert publishes s in the map, then hands it any datagrams that were
// held for its stream, in arrival order.
func (r *Router) ctlInsert(s *Session) {
	if r.hold != nil {
		r.ctlReleaseHeld(s)
	}
	r.sessions.Store(s.id, s) // publish the session: Dispatch may push from now on
	r.live++
}

// ctlRemove unpublishes s (if it is still the session routed for its
// stream) and frees its place under MaxTunnels.
func (r *Router) ctlRemove(s *Session) bool {
	if r.sessions.CompareAndDelete(s.id, s) {
		r.live--
		return true
	}
	return false
}

// ctlCancel moves a pending session to cancelled and releases its
// starter with reason. It reports whether it made the transition.
func (r *Router) ctlCancel(s *Session, reason error) bool {
	if !s.state.transition(StatePending, StateCancelled) {
		return false
	}
	r.counters.cancelled.Add(1)
	r.counters.pending.Add(-1)
	s.startErr.store(reason)
	r.ctlRemove(s)
	s.ring.Close() // refuse further datagrams; the init goroutine drains
	s.initCancel()
	close(s.ready) // release the starter at once
	return true
}

// ctlEnd ends s whatever its state: a pending session is cancelled, an
// active one closed. Terminal sessions are left alone.
func (r *Router) ctlEnd(s *Session, reason error) {
	if r.ctlCancel(s, reason) {
		return
	}
	if !s.state.transition(StateActive, StateClosed) {
		return
	}
	r.counters.closed.Add(1)
	r.counters.active.Add(-1)
	s.endReason.store(reason)
	r.ctlRemove(s)
	close(s.done)  // tell the pull-mode owner, and Done's other watchers
	s.ring.Close() // refuse further datagrams; schedule the consumer, which sees endReason and done
	if s.pull {
		s.teardownPull()
	}
}

// ctlForget removes a session whose init failed and releases its
// starter. Whoever removes a failed session from the map releases it, so
// that happens exactly once (here, or in ctlShutdown).
func (r *Router) ctlForget(s *Session) {
	if r.ctlRemove(s) {
		close(s.ready)
	}
}

// ctlShutdown ends every session and answers every queued request. It
// runs once, when Close is called.
func (r *Router) ctlShutdown() {
	r.sessions.Range(func(_ uint64, s *Session) bool {
		r.ctlEnd(s, ErrRouterClosed)
		if s.state.load() == StateFailed {
			r.ctlForget(s) // its opForget may never come
		}
		return true
	})
	r.baseCancel()
	if r.hold != nil {
		r.ctlDropAllHeld()
	}
	close(r.stopped)
	// Answer requests that raced with Close; call() also watches stopped.
	for {
		select {
		case m := <-r.ctl:
			if m.reply != nil {
				m.reply <- ctlReply{callErr: ErrRouterClosed}
			}
		default:
			return
		}
	}
}
