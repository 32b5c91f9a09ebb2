package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests in this file follow the rows of the seed-behaviour table in the
// design brief, in order.

// Row: start_link(MaxTunnels) — 0 is unlimited; the limit counts pending and
// active sessions together.
func TestMaxTunnelsCountsPendingAndActive(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{MaxTunnels: 2, Kinds: registryWith("x", k)})
	ctx := context.Background()

	// One active (registered) and one pending session fill the limit.
	_, err := r.Register(0, newRecorder())
	require.NoError(t, err)
	startErr := make(chan error, 1)
	go func() { _, err := r.StartSession(ctx, 4, Args{}); startErr <- err }()
	<-k.started

	_, err = r.StartSession(ctx, 8, Args{})
	require.ErrorIs(t, err, ErrTooManyTunnels)
	_, err = r.Register(12, newRecorder())
	require.ErrorIs(t, err, ErrTooManyTunnels)
	require.Equal(t, uint64(2), r.Stats().RejectedLimit)

	// Ending the pending one frees a place.
	require.NoError(t, r.CancelPending(4))
	require.ErrorIs(t, <-startErr, ErrCancelled)
	_, err = r.Register(12, newRecorder())
	require.NoError(t, err)
}

func TestMaxTunnelsZeroIsUnlimited(t *testing.T) {
	r := newTestRouter(t, Options{Kinds: registryWith("x", instantKind{})})
	for i := range 500 {
		_, err := r.StartSession(context.Background(), uint64(i)*4, Args{})
		require.NoError(t, err)
	}
	require.Equal(t, int64(500), r.Stats().Active)
}

// Row: start_session — the router spawns init asynchronously, the caller
// blocks until init completes, and routing goes on meanwhile.
func TestStartSessionBlocksUntilInitAndRoutingContinues(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	other := newRecorder()
	_, err := r.Register(100, other)
	require.NoError(t, err)

	type result struct {
		s   *Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := r.StartSession(context.Background(), 0, Args{})
		done <- result{s, err}
	}()
	s := <-k.started
	require.Equal(t, StatePending, s.State())

	// While init runs, the caller is still blocked and routing works.
	require.Equal(t, Queued, r.Dispatch(100, []byte("during init")))
	<-other.arrived
	select {
	case <-done:
		t.Fatal("StartSession returned before init completed")
	default:
	}

	k.release <- gateOutcome{}
	res := <-done
	require.NoError(t, res.err)
	require.Same(t, s, res.s)
	require.Equal(t, StateActive, s.State())
}

// Row: too many tunnels → typed error (the proxy maps it to 503).
func TestTooManyTunnelsIsTyped(t *testing.T) {
	r := newTestRouter(t, Options{MaxTunnels: 1, Kinds: registryWith("x", instantKind{})})
	_, err := r.StartSession(context.Background(), 0, Args{})
	require.NoError(t, err)
	_, err = r.StartSession(context.Background(), 4, Args{})
	require.True(t, errors.Is(err, ErrTooManyTunnels), "got %v", err)
}

// Row: session_module(Args) — the registry picks the kind from the protocol;
// connect-udp is the default.
func TestRegistrySelectsKind(t *testing.T) {
	var picked []string
	mk := func(name string) Kind {
		return KindFunc(func(context.Context, *Session, Args) (Handler, error) {
			picked = append(picked, name)
			return newRecorder(), nil
		})
	}
	reg := NewRegistry()
	reg.Register(ProtocolConnectUDP, mk("udp"))
	reg.Register(ProtocolConnectIP, mk("ip"))
	r := newTestRouter(t, Options{Kinds: reg})
	ctx := context.Background()

	s, err := r.StartSession(ctx, 0, Args{})
	require.NoError(t, err)
	require.Equal(t, "", s.Protocol())
	_, err = r.StartSession(ctx, 4, Args{Protocol: ProtocolConnectIP})
	require.NoError(t, err)
	_, err = r.StartSession(ctx, 8, Args{Protocol: ProtocolConnectUDP})
	require.NoError(t, err)
	require.Equal(t, []string{"udp", "ip", "udp"}, picked)

	_, err = r.StartSession(ctx, 12, Args{Protocol: "connect-tcp"})
	require.ErrorIs(t, err, ErrUnknownKind)
	require.Equal(t, uint64(1), r.Stats().RejectedKind)
}

// Row: datagrams for a pending stream are buffered (bounded) and delivered
// in arrival order on activation.
func TestPendingDatagramsDeliveredInOrder(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{PendingBuffer: 100, Kinds: registryWith("x", k)})
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.started

	for i := range 150 {
		res := r.Dispatch(0, []byte(fmt.Sprint(i)))
		if i < 100 {
			require.Equal(t, Queued, res, "datagram %d", i)
		} else {
			require.Equal(t, DroppedPendingOverflow, res, "datagram %d", i)
		}
	}
	k.release <- gateOutcome{}
	require.NoError(t, <-done)
	h := <-k.made
	waitFor(t, "pending datagrams", func() bool { return len(h.datagrams()) == 100 })
	for i, d := range h.datagrams() {
		require.Equal(t, fmt.Sprint(i), string(d))
	}
	st := checkAccounting(t, r, 150)
	require.Equal(t, uint64(50), st.DroppedPendingOverflow)
	require.Equal(t, uint64(100), st.Delivered)
}

// Row: ... and dropped (counted) if init fails.
func TestPendingDatagramsDroppedWhenInitFails(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.started
	for range 10 {
		require.Equal(t, Queued, r.Dispatch(0, []byte("x")))
	}
	k.release <- gateOutcome{err: errBoom}
	err := <-done
	require.ErrorIs(t, err, ErrInitFailed)
	require.ErrorIs(t, err, errBoom)

	waitFor(t, "session removed", func() bool { _, ok := r.Lookup(0); return !ok })
	require.Equal(t, DroppedUnknown, r.Dispatch(0, []byte("late")))
	waitFor(t, "teardown", func() bool { return r.Stats().DroppedClosed == 10 })
	st := checkAccounting(t, r, 11)
	require.Equal(t, uint64(1), st.Failed)
	require.Equal(t, uint64(1), st.DroppedUnknown)
}

// A panicking init is a failed init; the router keeps running.
func TestInitPanicIsFailure(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.started
	k.release <- gateOutcome{panic: true}
	err := <-done
	require.ErrorIs(t, err, ErrInitFailed)
	require.Contains(t, err.Error(), "panic")

	go func() { _, err := r.StartSession(context.Background(), 4, Args{}); done <- err }()
	<-k.started
	k.release <- gateOutcome{}
	require.NoError(t, <-done)
}

// Row: datagrams for an unknown stream, and malformed ones, are dropped and
// counted.
func TestUnknownStreamDroppedAndCounted(t *testing.T) {
	var released int
	r := newTestRouter(t, Options{Release: func([]byte) { released++ }})
	for i := range 7 {
		require.Equal(t, DroppedUnknown, r.Dispatch(uint64(i)*4, []byte("x")))
	}
	st := checkAccounting(t, r, 7)
	require.Equal(t, uint64(7), st.DroppedUnknown)
	require.Equal(t, 7, released)
}

// Row: cancel_pending — pending → removed, ok; active → ErrAlreadyActive;
// unknown → ok.
func TestCancelPending(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})

	require.NoError(t, r.CancelPending(40), "unknown stream")

	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	s := <-k.started
	require.NoError(t, r.CancelPending(0))
	require.ErrorIs(t, <-done, ErrCancelled)
	require.Equal(t, StateCancelled, s.State())
	_, ok := r.Lookup(0)
	require.False(t, ok)
	require.ErrorIs(t, <-k.ctxErr, context.Canceled, "init told through its context")

	_, err := r.Register(4, newRecorder())
	require.NoError(t, err)
	require.ErrorIs(t, r.CancelPending(4), ErrAlreadyActive)
}

// Row: a late init after cancel is torn down and never receives datagrams.
func TestLateInitAfterCancelIsTornDown(t *testing.T) {
	k := &stubbornKind{entered: make(chan struct{}), proceed: make(chan struct{}), made: make(chan *recorder, 1)}
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.entered
	require.Equal(t, Queued, r.Dispatch(0, []byte("before cancel")))
	require.NoError(t, r.CancelPending(0))
	require.ErrorIs(t, <-done, ErrCancelled)
	require.Equal(t, DroppedUnknown, r.Dispatch(0, []byte("after cancel")))

	close(k.proceed) // init completes after all
	h := <-k.made
	<-h.closed
	require.ErrorIs(t, h.closeReason(), ErrCancelled)
	require.Empty(t, h.datagrams())
	waitFor(t, "discard counted", func() bool { return r.Stats().DroppedClosed == 1 })
	checkAccounting(t, r, 2)
}

// stubbornKind ignores cancellation: it returns a handler whenever the test
// says so.
type stubbornKind struct {
	entered, proceed chan struct{}
	made             chan *recorder
}

func (k *stubbornKind) Start(context.Context, *Session, Args) (Handler, error) {
	close(k.entered)
	<-k.proceed
	h := newRecorder()
	k.made <- h
	return h, nil
}

// Row: register_session, unregister_session, lookup_session.
func TestRegisterUnregisterLookup(t *testing.T) {
	r := newTestRouter(t, Options{})
	h := newRecorder()
	s, err := r.Register(8, h)
	require.NoError(t, err)
	got, ok := r.Lookup(8)
	require.True(t, ok)
	require.Same(t, s, got)
	require.Equal(t, StateActive, s.State())

	_, err = r.Register(8, newRecorder())
	require.ErrorIs(t, err, ErrStreamExists)
	_, err = r.Register(9, newRecorder())
	require.ErrorIs(t, err, ErrInvalidStreamID)

	require.Equal(t, Queued, r.Dispatch(8, []byte("a")))
	<-h.arrived
	require.NoError(t, r.Unregister(8))
	_, ok = r.Lookup(8)
	require.False(t, ok)
	<-h.closed
	require.ErrorIs(t, h.closeReason(), ErrUnregistered)
	require.Equal(t, DroppedUnknown, r.Dispatch(8, []byte("b")))
	require.NoError(t, r.Unregister(8), "unregistering twice is fine")
	require.Equal(t, 1, h.closeCount())
	checkAccounting(t, r, 2)
}

// Row: stream reset by peer — forwarded to the live session, then dropped.
func TestResetActiveSession(t *testing.T) {
	r := newTestRouter(t, Options{})
	h := newRecorder()
	_, err := r.Register(0, h)
	require.NoError(t, err)
	require.NoError(t, r.Reset(0))
	<-h.closed
	require.ErrorIs(t, h.closeReason(), ErrStreamReset)
	_, ok := r.Lookup(0)
	require.False(t, ok)
}

// Seed bug fixed: a peer reset while pending releases the starter at once
// instead of leaving it waiting for the init timeout.
func TestResetWhilePendingReleasesStarterAtOnce(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{InitTimeout: time.Hour, Kinds: registryWith("x", k)})
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.started
	begin := time.Now()
	require.NoError(t, r.Reset(0))
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrStreamReset)
	case <-time.After(2 * time.Second):
		t.Fatal("starter still waiting after a reset")
	}
	require.Less(t, time.Since(begin), time.Second)
	require.ErrorIs(t, <-k.ctxErr, context.Canceled)
}

// Row: connection closed — every live session told, pending inits cancelled,
// no goroutine left behind (goleak checks the last part for every test).
func TestCloseTellsEverySession(t *testing.T) {
	k := newGateKind()
	r := NewRouter(Options{Kinds: registryWith("x", k), Logger: discardLogger()})
	var handlers []*recorder
	for i := range 5 {
		h := newRecorder()
		handlers = append(handlers, h)
		_, err := r.Register(uint64(i)*4, h)
		require.NoError(t, err)
	}
	pull, err := r.Register(100, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 200, Args{}); done <- err }()
	<-k.started

	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	for _, h := range handlers {
		require.Equal(t, 1, h.closeCount())
		require.ErrorIs(t, h.closeReason(), ErrRouterClosed)
	}
	require.ErrorIs(t, <-done, ErrRouterClosed)
	require.ErrorIs(t, <-k.ctxErr, context.Canceled)
	<-pull.Done()
	require.ErrorIs(t, pull.Err(), ErrRouterClosed)

	_, err = r.StartSession(context.Background(), 300, Args{})
	require.ErrorIs(t, err, ErrRouterClosed)
	_, err = r.Register(304, newRecorder())
	require.ErrorIs(t, err, ErrRouterClosed)
	require.Equal(t, DroppedUnknown, r.Dispatch(0, []byte("x")))
	st := r.Stats()
	require.Zero(t, st.Active)
	require.Zero(t, st.Pending)
}

// Seed bug fixed: the data plane never waits on the control plane. A session
// init that takes 5 s delays no other stream's datagrams.
func TestStalledInitDoesNotDelayOtherStreams(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	h := newRecorder()
	_, err := r.Register(4, h)
	require.NoError(t, err)

	measure := func(n int) time.Duration {
		var worst time.Duration
		for range n {
			begin := time.Now()
			r.Dispatch(4, []byte("x"))
			<-h.arrived
			worst = max(worst, time.Since(begin))
		}
		return worst
	}
	baseline := measure(200)

	done := make(chan error, 1)
	go func() { _, err := r.StartSession(context.Background(), 0, Args{}); done <- err }()
	<-k.started // init is now stalled (it would be for 5 s, or forever)
	stalledAt := time.Now()
	during := measure(200)
	// Control work keeps flowing too: registering and unregistering.
	_, err = r.Register(8, newRecorder())
	require.NoError(t, err)
	require.NoError(t, r.Unregister(8))
	require.Less(t, time.Since(stalledAt), 2*time.Second, "routing waited for the stalled init")
	t.Logf("worst dispatch→handler latency: %v before the stall, %v during", baseline, during)
	require.Less(t, during, max(20*baseline, 100*time.Millisecond))

	k.release <- gateOutcome{}
	require.NoError(t, <-done)
}

// A starter whose context ends first cancels the pending session and gets
// the context's error.
func TestStarterContextCancelsPending(t *testing.T) {
	k := newGateKind()
	r := newTestRouter(t, Options{Kinds: registryWith("x", k)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.StartSession(ctx, 0, Args{}); done <- err }()
	<-k.started
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.ErrorIs(t, <-k.ctxErr, context.Canceled)
	require.Equal(t, uint64(1), r.Stats().Cancelled)
}

// Counters: per router and per session.
func TestStatsCounters(t *testing.T) {
	r := newTestRouter(t, Options{RingSize: 4, Kinds: registryWith("x", instantKind{})})
	block := make(chan struct{})
	var unblock sync.Once
	t.Cleanup(func() { unblock.Do(func() { close(block) }) }) // before the router's Close
	h := &blockingHandler{recorder: newRecorder(), block: block, entered: make(chan struct{})}
	s, err := r.Register(0, h)
	require.NoError(t, err)

	// The first datagram is taken by the session goroutine, which then
	// blocks in the handler; four more fill the ring, two overflow it.
	require.Equal(t, Queued, r.Dispatch(0, []byte("0")))
	<-h.entered
	for i := range 6 {
		res := r.Dispatch(0, []byte("x"))
		if i < 4 {
			require.Equal(t, Queued, res)
		} else {
			require.Equal(t, DroppedRingFull, res)
		}
	}
	require.Equal(t, DroppedUnknown, r.Dispatch(4, []byte("y")))
	ss := s.Stats()
	require.Equal(t, 4, ss.Queued)
	require.Equal(t, uint64(5), ss.Accepted)
	require.Equal(t, uint64(2), ss.Refused)

	st := checkAccounting(t, r, 8)
	require.Equal(t, uint64(2), st.DroppedRingFull)
	require.Equal(t, uint64(1), st.DroppedUnknown)
	require.Equal(t, uint64(4), st.Queued)
	require.Equal(t, int64(1), st.Active)
	require.Equal(t, uint64(1), st.Registered)

	unblock.Do(func() { close(block) })
	waitFor(t, "delivery", func() bool { return r.Stats().Delivered == 5 })
	checkAccounting(t, r, 8)
}

type blockingHandler struct {
	*recorder
	block   chan struct{}
	entered chan struct{}
	once    bool
}

func (h *blockingHandler) HandleDatagrams(b [][]byte) {
	if !h.once {
		h.once = true
		close(h.entered)
		<-h.block
	}
	h.recorder.HandleDatagrams(b)
}
