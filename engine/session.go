package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"sync"
	"sync/atomic"

	"github.com/masqroute/masqroute/engine/internal/pull"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/ringbuf"
)

// A Session is one tunnel routed by a Router: the owner of one stream's
// datagrams.
//
// Ownership of its ring's consumer side: while pending, the session's init
// goroutine; once active, the same goroutine as its session goroutine (or,
// for a pull-mode session, whoever holds pullMu); after the session ends, the
// goroutine that tears it down. Exactly one of them at any time.
type Session struct {
	// ring comes first and inline: Dispatch finds the ring's read-mostly
	// fields on the session's first cache line, without a pointer chase.
	ring   ringbuf.Ring[[]byte]
	id     uint64
	router *Router
	state  stateWord

	// ready is closed by whoever wins the transition out of StatePending,
	// after storing startErr; StartSession waits on it.
	ready    chan struct{}
	startErr atomicError

	// done is closed by the control plane when an active session must
	// end, after storing endReason.
	done      chan struct{}
	endReason atomicError

	// handler is nil for a pull-mode session. Written by the init
	// goroutine (or the control plane, for Register) before the pending →
	// active transition, or the session's publication, makes it visible;
	// read by the session's consumer, one turn at a time (a worker or
	// the dedicated goroutine; the init goroutine when a cancel won), and
	// once by the init goroutine for its BlockingHandler check.
	handler Handler
	// pull marks a session registered without a Handler. Immutable.
	pull bool
	// initCancel cancels Kind.Start's context. nil for registered
	// sessions.
	initCancel context.CancelFunc

	// pullMu serializes the consumers of a pull-mode session: pop and
	// the teardown.
	pullMu sync.Mutex

	delivered atomic.Uint64 // datagrams handed to the Handler or popped
	// delayStamp is the queue-delay sample's stamp (queuedelay.go):
	// written by producers, read by the consumer.
	delayStamp atomic.Uint64
	protocol   string

	// Scheduling of a session with a Handler (see executor.go). worker and
	// node are set by newSession and immutable. dedicated is non-nil for a
	// BlockingHandler, whose session runs on a goroutine of its own that
	// waits on it; written before the pending → active transition, read by
	// Wake only after a Park that follows it. finished is written by the
	// session's consumer when it tears the session down.
	worker    *worker
	labels    *labelSet // profiler labels of its turns on worker (labels.go)
	node      schedNode
	dedicated chan struct{}
	finished  bool
}

// sessionWaker is a Session seen as its ring's ringbuf.Waker, so that Wake
// is not part of Session's API. (The conversion costs nothing.)
type sessionWaker Session

// Wake schedules the session after its ring's empty → non-empty edge (or its
// Close): exactly once per Park that returned true.
func (w *sessionWaker) Wake() {
	s := (*Session)(w)
	if s.dedicated != nil {
		s.dedicated <- struct{}{} // capacity 1, one send per park: never blocks
		return
	}
	s.worker.schedule(&s.node)
}

// newSession makes a session. A pull-mode session's owner parks on its ring
// with Arm and Notify; any other session is scheduled on a worker of the
// router's executor. It runs on the control plane.
func newSession(r *Router, id uint64, protocol string, state State, limit int, pull bool) *Session {
	s := &Session{
		id:       id,
		router:   r,
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		protocol: protocol,
		pull:     pull,
	}
	s.ring.Init(r.opts.RingSize)
	if !pull {
		s.worker = r.executorOnControl().place(r.opts.Placement)
		s.labels = s.worker.labels.forKind(kindLabel(protocol))
		s.node.s = s
		s.ring.SetWaker((*sessionWaker)(s))
	}
	s.state.v.Store(uint32(state))
	s.ring.SetLimit(limit)
	return s
}

// StreamID is the stream whose datagrams the session owns.
func (s *Session) StreamID() uint64 { return s.id }

// State is the session's current state.
func (s *Session) State() State { return s.state.load() }

// Protocol is the protocol the session was started for ("" when registered).
func (s *Session) Protocol() string { return s.protocol }

// Router is the router the session belongs to.
func (s *Session) Router() *Router { return s.router }

// Done is closed when an active session has ended. A session that never
// became active never closes it.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is the reason the session ended, or nil while it is pending or active.
func (s *Session) Err() error {
	if err := s.endReason.load(); err != nil {
		return err
	}
	return s.startErr.load()
}

// Close ends the session with reason ErrUnregistered; it is the way a Kind
// or Handler ends its own session (the target went away, an idle timeout).
// It does not wait for the control plane and may be called from the
// Handler's own goroutine.
func (s *Session) Close() { s.CloseWithError(ErrUnregistered) }

// CloseWithError ends the session with the given reason, which its
// Handler's Close receives. Later calls have no effect.
func (s *Session) CloseWithError(reason error) {
	if reason == nil {
		reason = ErrUnregistered
	}
	s.router.post(ctlMsg{op: opEndSession, s: s, reason: reason})
}

// SessionStats are one session's counters.
type SessionStats struct {
	State     State
	Queued    int    // datagrams in the ring now
	Accepted  uint64 // datagrams pushed into the ring
	Delivered uint64 // datagrams handed to the Handler (or popped)
	Refused   uint64 // datagrams the ring refused (full, over the pending limit, or closed)
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() SessionStats {
	rs := s.ring.Stats()
	return SessionStats{
		State:     s.state.load(),
		Queued:    s.ring.Len(),
		Accepted:  rs.Pushed,
		Delivered: s.delivered.Load(),
		Refused:   rs.Dropped,
	}
}

func (s *Session) String() string {
	return fmt.Sprintf("session(stream=%d %s %s)", s.id, s.protocol, s.state.load())
}

// startResult is what StartSession returns once ready is closed.
func (s *Session) startResult() (*Session, error) {
	if err := s.startErr.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// routineInit runs Kind.Start for a pending session and, if it activates,
// goes on as the session goroutine.
func (s *Session) routineInit(ctx context.Context, kind Kind, args Args) {
	r := s.router
	defer r.wg.Done()
	defer s.initCancel()

	h, err := callStart(ctx, kind, s, args)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == context.DeadlineExceeded {
			err = ErrInitTimeout
		}
		if s.state.transition(StatePending, StateFailed) {
			r.counters.failed.Add(1)
			r.counters.pending.Add(-1)
			s.startErr.store(&initError{err})
			// The control plane removes the session, then releases the
			// starter: once StartSession returns, the stream and its
			// place under MaxTunnels are free again.
			r.post(ctlMsg{op: opForget, s: s})
		}
		// Else a cancel won; the canceller released the starter and
		// removed the session.
		s.teardown()
		return
	}

	s.handler = h // published by the transition below
	if b, ok := h.(BlockingHandler); ok && b.Blocking() {
		s.dedicated = make(chan struct{}, 1)
	}
	if !s.state.transition(StatePending, StateActive) {
		// A cancel won the race: this init came too late. Tear its
		// handler down; it never sees a datagram.
		<-s.ready
		s.teardown()
		s.closeHandler(s.startErr.load())
		return
	}
	r.counters.activated.Add(1)
	r.counters.pending.Add(-1)
	r.counters.active.Add(1)
	// Raise the pending limit to the full ring. A concurrent end closed
	// the ring already if it came first; raising a closed ring's limit
	// has no effect.
	s.ring.SetLimit(s.ring.Cap())
	close(s.ready) // release the starter
	r.wg.Add(1)    // the session's run; finish ends it
	s.run()
}

// callStart runs kind.Start, turning a panic into an error.
func callStart(ctx context.Context, kind Kind, s *Session, args Args) (h Handler, err error) {
	defer func() {
		if p := recover(); p != nil {
			h, err = nil, fmt.Errorf("panic in session init: %v", p)
		}
	}()
	h, err = kind.Start(ctx, s, args)
	if err == nil && h == nil {
		err = errors.New("session kind returned no handler")
	}
	return h, err
}

// run starts consuming an active session with a Handler: its first turn on
// its worker, or its own goroutine for a BlockingHandler. The ring starts
// unparked, so this first turn is owed (ringbuf.Ring.SetWaker).
func (s *Session) run() {
	if s.dedicated != nil {
		go s.routineDedicated()
		return
	}
	s.worker.schedule(&s.node)
}

// runTurn is one turn of an active session: pop a batch, hand it to the
// Handler, and report whether the session wants another turn at once (its
// batch was full, or an item arrived as it parked). When the session has
// ended, runTurn tears it down instead and reports false. w, the worker
// running the turn, is nil on a dedicated goroutine.
//
// Only the session's consumer calls runTurn: the worker it was scheduled on
// (one turn at a time, since a session is on one list at most once), or its
// dedicated goroutine.
func (s *Session) runTurn(scratch *[][]byte, w *worker) bool {
	if s.ring.Closed() {
		// endLocked stores endReason and closes done before it closes
		// the ring, so both are visible here.
		s.finish()
		return false
	}
	bs := s.router.opts.BatchSize
	if len(*scratch) < bs {
		*scratch = make([][]byte, bs)
	}
	batch := (*scratch)[:bs]
	h := s.ring.Head()
	n := s.ring.PopBatch(batch)
	if n > 0 {
		if w != nil {
			w.delay.observeQueueDelay(s, h, n) // before the Handler runs
		}
		s.deliver(batch[:n])
		clear(batch[:n])
		if w != nil {
			w.dgrams.Add(uint64(n))
		}
	}
	if n == bs {
		return true // maybe more: the back of the line, after the others
	}
	return !s.ring.Park()
}

// finish tears an ended session down on its consumer and closes its
// Handler.
func (s *Session) finish() {
	s.finished = true
	s.teardown()
	s.closeHandler(s.endReason.load())
	s.router.wg.Done()
}

// routineDedicated is the goroutine of a session whose Handler may block.
func (s *Session) routineDedicated() {
	pprof.SetGoroutineLabels(dedicatedLabels(s.protocol))
	scratch := make([][]byte, s.router.opts.BatchSize)
	for {
		if s.runTurn(&scratch, nil) {
			continue
		}
		if s.finished {
			return
		}
		<-s.dedicated // Wake's send: an item arrived, or the session ended
	}
}

// deliver hands a batch to the Handler, then releases it. A panicking
// Handler ends its session.
func (s *Session) deliver(batch [][]byte) {
	s.delivered.Add(uint64(len(batch))) // counted as handed over, not as handled
	defer func() {
		if p := recover(); p != nil {
			s.router.opts.Logger.Error("masqroute: handler panicked; closing session",
				"stream", s.id, "panic", p)
			s.CloseWithError(fmt.Errorf("handler panic: %v", p))
		}
		for _, d := range batch {
			s.router.release(d)
		}
	}()
	s.handler.HandleDatagrams(batch)
}

func (s *Session) closeHandler(reason error) {
	defer func() {
		if p := recover(); p != nil {
			s.router.opts.Logger.Error("masqroute: handler Close panicked", "stream", s.id, "panic", p)
		}
	}()
	s.handler.Close(reason)
}

// teardown runs once per session, on the goroutine that consumes its ring
// last. It closes the ring, discards what is left (counted as dropped) and
// folds the session's counters into the router's totals. After Drain
// returns no push can succeed any more, so the folded numbers are final.
func (s *Session) teardown() {
	r := s.router
	s.ring.Close()
	discarded := s.ring.Drain(r.release)
	rs := s.ring.Stats()
	r.counters.discarded.Add(uint64(discarded))
	r.counters.foldedPushed.Add(rs.Pushed)
	r.counters.foldedDelivered.Add(s.delivered.Load())
}

// pop moves up to len(dst) datagrams of a pull-mode session into dst and
// returns how many; it does not block. The slices belong to the caller, who
// passes them to Options.Release when done if the router's owner pools
// them. pop must not be called on a session that has a Handler. It and arm,
// notify, disarm reach engine/client through engine/internal/pull (see
// init), not as methods: they are not for embedders.
func (s *Session) pop(dst [][]byte) int {
	if !s.pull {
		panic("engine: Pop on a session with a Handler")
	}
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	if s.state.load() != StateActive {
		return 0
	}
	n := s.ring.PopBatch(dst)
	s.delivered.Add(uint64(n))
	return n
}

// arm, notify and disarm let the owner of a pull-mode session park until
// its ring becomes non-empty; pull.Ops documents the protocol.
func (s *Session) arm() bool               { return s.ring.Arm() }
func (s *Session) notify() <-chan struct{} { return s.ring.Notify() }
func (s *Session) disarm()                 { s.ring.Disarm() }

func init() {
	pull.Set(pull.Ops[Session]{Pop: (*Session).pop, Arm: (*Session).arm, Notify: (*Session).notify, Disarm: (*Session).disarm})
}

// teardownPull ends a pull-mode session's ring under pullMu, so no Pop runs
// concurrently with the Drain.
func (s *Session) teardownPull() {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	s.teardown()
}

// ErrNoSender: the router has no Options.Sender.
var ErrNoSender = errors.New("masqroute: router has no datagram sender")

// MaxDatagramHeaderLen is the most bytes an HTTP Datagram's header takes:
// the quarter stream ID and the context ID, a QUIC varint of up to 8 bytes
// each. Session.SendDatagram writes it in front of the payload.
const MaxDatagramHeaderLen = wire.MaxDatagramHeaderLen

// SendDatagram sends buf[off:] to the peer as an HTTP Datagram of this
// session with the given context ID. The quarter stream ID and context ID
// are written into buf just before off, so buf[:off] must have room for them
// (MaxDatagramHeaderLen bytes always suffice; 2 do for context 0 on
// streams below 256). Nothing is copied or allocated here; the
// Options.Sender copies if it keeps the bytes (quic-go does).
//
// There is no delivery guarantee, as for any QUIC datagram; the call blocks
// while the connection's send queue is full.
func (s *Session) SendDatagram(buf []byte, off int, contextID uint64) error {
	snd := s.router.opts.Sender
	if snd == nil {
		return ErrNoSender
	}
	start := wire.PutDatagramHeader(buf, off, s.id, contextID)
	return snd.SendDatagram(buf[start:])
}
