package engine

import (
	"context"
	"time"
)

// The control plane: one goroutine per router, RoutineControl, owns every
// write to the session map and the live-session count. Public methods send
// it a ctlMsg; Dispatch never does. The transitions it makes (pending →
// cancelled, active → closed) are compare-and-swaps on the session's state
// word, because the init goroutine makes the competing ones (pending →
// active, pending → failed) without asking it.

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

// RoutineControl is the body of the router's control-plane goroutine.
func (r *Router) RoutineControl() {
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
			holdC = r.armHoldLocked(holdTimer)
		}
		select {
		case m := <-r.ctl:
			r.handleLocked(m)
		case <-holdWake:
			r.hold.disarm()
		case <-holdC:
		case <-r.stopping:
			if holdTimer != nil {
				holdTimer.Stop()
			}
			r.shutdownLocked()
			return
		}
	}
}

// handleLocked performs one control request. "Locked" here means: on the
// control-plane goroutine, which is what serializes these operations.
func (r *Router) handleLocked(m ctlMsg) {
	var res ctlReply
	switch m.op {
	case opStart:
		res.s, res.callErr = r.startLocked(m.id, m.kind, m.args)
	case opRegister:
		res.s, res.callErr = r.registerLocked(m.id, m.handler)
	case opCancel:
		if s := r.sessions.Load(m.id); s != nil && !r.cancelLocked(s, m.reason) &&
			s.state.load() == StateActive {
			res.err = ErrAlreadyActive
		}
	case opEnd:
		if s := r.sessions.Load(m.id); s != nil {
			r.endLocked(s, m.reason)
		}
	case opEndSession:
		r.endLocked(m.s, m.reason)
	case opForget:
		r.forgetLocked(m.s)
	}
	if m.reply != nil {
		m.reply <- res
	}
}

// admitLocked decides whether a session for id may be created. A stream
// that already has a session is refused as such even at the tunnel limit:
// the more specific reason wins (found by FuzzRouter).
func (r *Router) admitLocked(id uint64) error {
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

func (r *Router) startLocked(id uint64, kind Kind, args Args) (*Session, error) {
	if err := r.admitLocked(id); err != nil {
		return nil, err
	}
	s := newSession(r, id, args.Protocol, StatePending, r.opts.PendingBuffer, false)
	ctx, cancel := context.WithTimeout(r.baseCtx, r.opts.InitTimeout)
	s.initCancel = cancel
	r.insertLocked(s)
	r.counters.started.Add(1)
	r.counters.pending.Add(1)
	r.wg.Add(1)
	go s.routineInit(ctx, kind, args)
	return s, nil
}

func (r *Router) registerLocked(id uint64, h Handler) (*Session, error) {
	if err := r.admitLocked(id); err != nil {
		return nil, err
	}
	s := newSession(r, id, "", StateActive, r.opts.RingSize, h == nil)
	s.handler = h
	if b, ok := h.(BlockingHandler); ok && b.Blocking() {
		s.dedicated = make(chan struct{}, 1)
	}
	close(s.ready)
	r.insertLocked(s)
	r.counters.registered.Add(1)
	r.counters.active.Add(1)
	if h != nil {
		r.wg.Add(1) // the session's run; finish ends it
		s.run()
	}
	return s, nil
}

// insertLocked publishes s in the map, then hands it any datagrams that were
// held for its stream, in arrival order.
func (r *Router) insertLocked(s *Session) {
	if r.hold != nil {
		r.releaseHeldLocked(s)
	}
	r.sessions.Store(s.id, s) // publish the session: Dispatch may push from now on
	r.live++
}

// removeLocked unpublishes s (if it is still the session routed for its
// stream) and frees its place under MaxTunnels.
func (r *Router) removeLocked(s *Session) bool {
	if r.sessions.CompareAndDelete(s.id, s) {
		r.live--
		return true
	}
	return false
}

// cancelLocked moves a pending session to cancelled and releases its
// starter with reason. It reports whether it made the transition.
func (r *Router) cancelLocked(s *Session, reason error) bool {
	if !s.state.transition(StatePending, StateCancelled) {
		return false
	}
	r.counters.cancelled.Add(1)
	r.counters.pending.Add(-1)
	s.startErr.store(reason)
	r.removeLocked(s)
	s.ring.Close() // refuse further datagrams; the init goroutine drains
	s.initCancel()
	close(s.ready) // release the starter at once
	return true
}

// endLocked ends s whatever its state: a pending session is cancelled, an
// active one closed. Terminal sessions are left alone.
func (r *Router) endLocked(s *Session, reason error) {
	if r.cancelLocked(s, reason) {
		return
	}
	if !s.state.transition(StateActive, StateClosed) {
		return
	}
	r.counters.closed.Add(1)
	r.counters.active.Add(-1)
	s.endReason.store(reason)
	r.removeLocked(s)
	close(s.done)  // tell the pull-mode owner, and Done's other watchers
	s.ring.Close() // refuse further datagrams; schedule the consumer, which sees endReason and done
	if s.pull {
		s.teardownPull()
	}
}

// forgetLocked removes a session whose init failed and releases its
// starter. Whoever removes a failed session from the map releases it, so
// that happens exactly once (here, or in shutdownLocked).
func (r *Router) forgetLocked(s *Session) {
	if r.removeLocked(s) {
		close(s.ready)
	}
}

// shutdownLocked ends every session and answers every queued request. It
// runs once, when Close is called.
func (r *Router) shutdownLocked() {
	r.sessions.Range(func(_ uint64, s *Session) bool {
		r.endLocked(s, ErrRouterClosed)
		if s.state.load() == StateFailed {
			r.forgetLocked(s) // its opForget may never come
		}
		return true
	})
	r.baseCancel()
	if r.hold != nil {
		r.dropAllHeldLocked()
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
