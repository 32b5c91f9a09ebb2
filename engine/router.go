package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/shardmap"
)

// Defaults for Options fields left zero.
const (
	DefaultRingSize      = 128
	DefaultPendingBuffer = 100
	DefaultInitTimeout   = 30 * time.Second
	// DefaultBatchSize is how many datagrams a session goroutine pops and
	// hands to its Handler at once.
	DefaultBatchSize = 32
)

// Options configure a Router. The zero value is usable.
type Options struct {
	// MaxTunnels bounds the sessions the router holds, pending and active
	// together. 0 means unlimited.
	MaxTunnels int
	// RingSize is each session's ring capacity in datagrams (rounded up to
	// a power of two). Default DefaultRingSize.
	RingSize int
	// PendingBuffer bounds the datagrams held for a session whose Start is
	// still running; they are handed over in arrival order on activation
	// and dropped if Start fails. Default DefaultPendingBuffer; it is
	// capped at the ring size.
	PendingBuffer int
	// InitTimeout bounds Kind.Start. Default DefaultInitTimeout.
	InitTimeout time.Duration
	// BatchSize is the most datagrams a Handler receives per call.
	// Default DefaultBatchSize.
	BatchSize int
	// Kinds selects the session kind for StartSession. Default: an empty
	// registry, which answers ErrUnknownKind for every protocol; the
	// proxy passes one with CONNECT-UDP registered.
	Kinds *Registry
	// Hold, when enabled, keeps datagrams for streams the router does not
	// know yet for a short while, in case their request is still in
	// flight (RFC 9297 §2.1 permits a peer to send them early).
	Hold HoldOptions
	// Sender carries HTTP Datagrams back to the peer: Session.SendDatagram
	// uses it. *quic.Conn satisfies it. May be nil for a router that only
	// receives.
	Sender DatagramSender
	// Release, if set, receives every datagram slice the router is done
	// with: after its Handler returned, or when it was dropped. A
	// dispatcher that takes buffers from a pool gives them back here.
	Release func([]byte)
	// Logger receives the router's debug and error logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Shards is the shard count of the session map (power of two).
	// Default 8.
	Shards int
	// Executor runs the router's active sessions (those with a Handler).
	// A proxy shares one among its connections' routers and closes it
	// after them. Nil: the router starts its own, with Workers workers,
	// when its first such session starts, and closes it in Close.
	Executor *Executor
	// Workers is the worker count of the router's own executor; ignored
	// when Executor is set. Default DefaultWorkers().
	Workers int
	// Placement picks the executor worker of each of the router's
	// sessions. Default: round-robin over every worker.
	Placement Placement
}

func (o Options) withDefaults() Options {
	if o.RingSize <= 0 {
		o.RingSize = DefaultRingSize
	}
	if o.PendingBuffer <= 0 {
		o.PendingBuffer = DefaultPendingBuffer
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Kinds == nil {
		o.Kinds = NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Shards <= 0 {
		o.Shards = 8
	}
	o.Hold = o.Hold.withDefaults()
	return o
}

// A Router routes the HTTP Datagrams of one HTTP/3 connection to the
// sessions that own them, keyed by stream ID. It is the Go form of the seed's
// masque_server_connection, split in two planes:
//
//   - The data plane is Dispatch: one wait-free map lookup and one wait-free
//     ring push. It never takes a lock, never sends on a channel, never
//     allocates, and never waits for the control plane. Any number of
//     goroutines may call it at once.
//   - The control plane is one goroutine per router (routineControl). It
//     alone writes the session map: it starts, registers, unregisters and
//     cancels sessions, and it handles stream resets and Close. Public
//     methods other than Dispatch, Lookup and Stats send it a request.
//
// Active sessions have no goroutine of their own: an Executor's workers run
// the sessions that have work, one batch per turn, and a session is put on
// its worker's ready list on its ring's empty → non-empty edge (see
// executor.go). A session's Kind.Start runs on a goroutine of its own
// before activation, so a slow init delays nothing but its own session.
type Router struct {
	opts     Options
	sessions *shardmap.Map[Session]

	// hold keeps datagrams for not-yet-known streams; nil when disabled.
	hold *holdQueue

	// ctl carries requests to the control plane. It is bounded
	// (ctlQueueLen) and blocks when full: call and post wait for room, or
	// for Close, so a control request is never dropped, and a burst of
	// more than ctlQueueLen requests waits for the control plane. Dispatch
	// never sends on it.
	ctl      chan ctlMsg
	stopping chan struct{} // closed by Close: the control plane shuts down
	stopped  chan struct{} // closed when the control plane has exited
	stopOnce sync.Once

	// wg counts the control plane, every init goroutine, and every session
	// with a Handler from activation until its teardown (Session.finish);
	// Close waits for it.
	wg sync.WaitGroup

	// baseCtx parents every init context; cancelled by Close.
	baseCtx    context.Context
	baseCancel context.CancelFunc

	// live counts pending + active sessions. Written by the control plane
	// only.
	live int

	// exec runs the active sessions; ownExec says the router started it
	// (on the control plane, which alone writes both; Close reads them
	// after the control plane has ended).
	exec    *Executor
	ownExec bool

	counters counters
}

// ctlQueueLen is the depth of a router's control channel.
const ctlQueueLen = 16

// NewRouter returns a router and starts its control plane. Call Close when
// the connection ends.
func NewRouter(opts Options) *Router {
	opts = opts.withDefaults()
	if opts.PendingBuffer > opts.RingSize {
		opts.PendingBuffer = opts.RingSize
	}
	r := &Router{
		opts:     opts,
		exec:     opts.Executor,
		sessions: shardmap.New[Session](shardmap.WithShards(opts.Shards)),
		ctl:      make(chan ctlMsg, ctlQueueLen),
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	r.baseCtx, r.baseCancel = context.WithCancel(context.Background())
	if opts.Hold.enabled() {
		r.hold = newHoldQueue(opts.Hold)
	}
	r.wg.Add(1)
	go r.routineControl()
	return r
}

// Dispatch routes one datagram payload (context ID first, as on the wire
// after the quarter stream ID) to the session of streamID.
//
// Dispatch is the data plane: it is wait-free, allocation-free and safe for
// concurrent use by any number of goroutines. The router owns d from the
// call on: it goes to the session's Handler, or it is dropped and counted,
// and either way Options.Release receives it in the end. Datagrams from one
// dispatching goroutine reach a session in the order they were dispatched.
func (r *Router) Dispatch(streamID uint64, d []byte) DispatchResult {
	s := r.sessions.Load(streamID)
	if s == nil {
		return r.dispatchUnknownSlow(streamID, d)
	}
	// One ticket in P is a queue-delay sample: stamped before the push,
	// so the stamp is published with the datagram (queuedelay.go).
	if t := s.ring.Tail(); t&(1<<delaySampleShift(s.ring.Cap())-1) == 0 {
		s.stampQueueDelaySlow(t)
	}
	if s.ring.TryPush(d) {
		return Queued
	}
	return r.dispatchRefusedSlow(s, d)
}

// DispatchResult says what Dispatch did with a datagram.
type DispatchResult uint8

const (
	// Queued: the datagram is in the session's ring.
	Queued DispatchResult = iota
	// Held: no session yet; the datagram waits briefly for its request.
	Held
	// DroppedUnknown: no session has this stream ID.
	DroppedUnknown
	// DroppedPendingOverflow: the session is still starting and its
	// pending buffer is full.
	DroppedPendingOverflow
	// DroppedRingFull: the session's ring is full; its consumer is behind.
	DroppedRingFull
	// DroppedClosed: the session has ended (or is ending).
	DroppedClosed
)

var dispatchResultNames = [...]string{"queued", "held", "dropped-unknown", "dropped-pending-overflow", "dropped-ring-full", "dropped-closed"}

func (d DispatchResult) String() string {
	if int(d) < len(dispatchResultNames) {
		return dispatchResultNames[d]
	}
	return "DispatchResult(?)"
}

// dispatchUnknownSlow handles a datagram for a stream with no session.
func (r *Router) dispatchUnknownSlow(streamID uint64, d []byte) DispatchResult {
	if r.hold != nil && r.hold.tryHold(streamID, d) {
		r.counters.held.Add(1)
		return Held
	}
	r.counters.unknownDirect.Add(1)
	r.release(d)
	return DroppedUnknown
}

// dispatchRefusedSlow attributes a refused push to a reason by the state the
// session is in after the refusal.
func (r *Router) dispatchRefusedSlow(s *Session, d []byte) DispatchResult {
	var res DispatchResult
	switch s.state.load() {
	case StatePending:
		r.counters.pendingRefused.Add(1)
		res = DroppedPendingOverflow
	case StateActive:
		r.counters.ringRefused.Add(1)
		res = DroppedRingFull
	default:
		r.counters.closedRefused.Add(1)
		res = DroppedClosed
	}
	r.release(d)
	return res
}

func (r *Router) release(d []byte) {
	if r.opts.Release != nil {
		r.opts.Release(d)
	}
}

// Lookup returns the session routed for streamID, pending or active; the
// seed's lookup_session/2. It is wait-free.
func (r *Router) Lookup(streamID uint64) (*Session, bool) {
	s := r.sessions.Load(streamID)
	return s, s != nil
}

// StartSession starts a session for streamID: it picks the Kind from args
// through Options.Kinds, runs its Start on a new goroutine and blocks until
// Start returns, ctx ends, the stream is reset, or Options.InitTimeout
// passes. The router keeps routing meanwhile; datagrams for the pending
// stream are held and delivered in order on activation.
//
// If ctx ends first, StartSession cancels the pending session (as the seed's
// starter calls cancel_pending/2 when it times out) and returns ctx.Err(); if
// the session won the race and is already active, it is returned with a nil
// error. Other errors: ErrTooManyTunnels, ErrStreamExists, ErrUnknownKind,
// ErrRouterClosed, ErrStreamReset, ErrCancelled, and init failures matching
// ErrInitFailed (and ErrInitTimeout when the timeout passed).
func (r *Router) StartSession(ctx context.Context, streamID uint64, args Args) (*Session, error) {
	if err := checkStreamID(streamID); err != nil {
		return nil, err
	}
	kind, err := r.opts.Kinds.Select(args)
	if err != nil {
		r.counters.rejectedKind.Add(1)
		return nil, err
	}
	reply := make(chan ctlReply, 1)
	res, err := r.call(ctlMsg{op: opStart, id: streamID, kind: kind, args: args, reply: reply})
	if err != nil {
		return nil, err
	}
	s := res.s
	timer := time.NewTimer(r.opts.InitTimeout)
	defer timer.Stop()
	var gaveUp error
	select {
	case <-s.ready:
		return s.startResult()
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-timer.C:
		// Kind.Start has the same deadline on its context; this catches
		// a Start that ignores it.
		gaveUp = &initError{ErrInitTimeout}
	}
	// The starter gave up: cancel, unless activation won the race.
	if err := r.cancel(streamID, gaveUp); err == ErrAlreadyActive {
		<-s.ready // the activating goroutine closes it right after its CAS
		return s.startResult()
	}
	<-s.ready
	return nil, gaveUp
}

// Register makes h the owner of streamID's datagrams, with no init: the
// session is active at once (the seed's register_session/3). A nil h makes
// a pull-mode session, whose owner takes its datagrams itself instead of
// through a Handler; engine/client uses it, through engine/internal/pull.
func (r *Router) Register(streamID uint64, h Handler) (*Session, error) {
	if err := checkStreamID(streamID); err != nil {
		return nil, err
	}
	res, err := r.call(ctlMsg{op: opRegister, id: streamID, handler: h, reply: make(chan ctlReply, 1)})
	return res.s, err
}

// Unregister ends the session of streamID, pending or active, with reason
// ErrUnregistered (the seed's unregister_session/2). An unknown stream is
// not an error.
func (r *Router) Unregister(streamID uint64) error {
	_, err := r.call(ctlMsg{op: opEnd, id: streamID, reason: ErrUnregistered, reply: make(chan ctlReply, 1)})
	return err
}

// CancelPending cancels the pending session of streamID (the seed's
// cancel_pending/2): it returns nil if the session was pending (now
// cancelled) or unknown, and ErrAlreadyActive if it is active. Its Start is
// told through its context; whatever Handler Start returns is closed at once.
func (r *Router) CancelPending(streamID uint64) error {
	return r.cancel(streamID, ErrCancelled)
}

func (r *Router) cancel(streamID uint64, reason error) error {
	res, err := r.call(ctlMsg{op: opCancel, id: streamID, reason: reason, reply: make(chan ctlReply, 1)})
	if err != nil {
		return err
	}
	return res.err
}

// Reset reports that the peer reset streamID. A pending session is cancelled
// and its StartSession caller released at once with ErrStreamReset; an
// active one is closed and its Handler told ErrStreamReset.
func (r *Router) Reset(streamID uint64) error {
	_, err := r.call(ctlMsg{op: opEnd, id: streamID, reason: ErrStreamReset, reply: make(chan ctlReply, 1)})
	return err
}

// Close ends the router: every live session is told ErrRouterClosed, every
// pending init is cancelled, and Close returns once every goroutine the
// router started has ended. Close is idempotent and safe to call
// concurrently; every call waits for the end.
func (r *Router) Close() error {
	r.stopOnce.Do(func() { close(r.stopping) })
	r.wg.Wait()
	if r.ownExec {
		r.exec.Close() // every session has finished: the workers are idle
	}
	return nil
}

// executorOnControl returns the executor, starting the router's own on
// first use. Control plane only.
func (r *Router) executorOnControl() *Executor {
	if r.exec == nil {
		r.exec = NewExecutor(r.opts.Workers)
		r.ownExec = true
	}
	return r.exec
}

// Done is closed once the router's control plane has shut down.
func (r *Router) Done() <-chan struct{} { return r.stopped }

// call sends m to the control plane and waits for its reply.
func (r *Router) call(m ctlMsg) (ctlReply, error) {
	select {
	case r.ctl <- m:
	case <-r.stopping:
		return ctlReply{}, ErrRouterClosed
	}
	select {
	case res := <-m.reply:
		return res, res.callErr
	case <-r.stopped:
		select {
		case res := <-m.reply:
			return res, res.callErr
		default:
			return ctlReply{}, ErrRouterClosed
		}
	}
}

// post sends m to the control plane without waiting for a reply. It gives up
// once the control plane is stopping: shutdown handles every session anyway.
func (r *Router) post(m ctlMsg) {
	select {
	case r.ctl <- m:
	case <-r.stopping:
	}
}

// checkStreamID accepts client-initiated bidirectional stream IDs, the only
// streams that carry HTTP/3 requests, below the QUIC limit of 2^62.
func checkStreamID(id uint64) error {
	if id%4 != 0 || id >= 1<<62 {
		return ErrInvalidStreamID
	}
	return nil
}

// atomicError is an error set at most once and read after a channel close
// or an atomic load has published it.
type atomicError struct{ p atomic.Pointer[error] }

func (a *atomicError) store(err error) { a.p.Store(&err) }
func (a *atomicError) load() error {
	if p := a.p.Load(); p != nil {
		return *p
	}
	return nil
}

// A DatagramReceiver yields the HTTP/3 Datagrams of one connection, quarter
// stream ID first. *quic.Conn satisfies it.
type DatagramReceiver interface {
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// ErrBadDatagram: a datagram's quarter stream ID does not parse or is above
// 2^60-1; the connection must be closed with H3_DATAGRAM_ERROR (RFC 9297
// §2.1).
var ErrBadDatagram = errors.New("masqroute: malformed HTTP/3 datagram")

// ReceiveDatagrams reads src's datagrams and dispatches each to its stream
// until ctx ends or src fails; it returns the error that stopped it. It is
// the loop a connection's single datagram reader runs. A datagram that does
// not parse stops it with an error matching ErrBadDatagram, after which the
// caller closes the connection with H3_DATAGRAM_ERROR.
func (r *Router) ReceiveDatagrams(ctx context.Context, src DatagramReceiver) error {
	for {
		b, err := src.ReceiveDatagram(ctx)
		if err != nil {
			return err
		}
		id, payload, err := wire.ParseDatagram(b)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadDatagram, err)
		}
		r.Dispatch(id, payload)
	}
}
