package ifwatch

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSub hands out what is sent on reads, one per Read; Close unblocks
// a waiting Read with io.ErrClosedPipe, as closing the socket does.
type fakeSub struct {
	reads  chan error
	closed chan struct{}
	closes atomic.Int32
}

func newFakeSub() *fakeSub {
	return &fakeSub{reads: make(chan error), closed: make(chan struct{})}
}

func (f *fakeSub) Read(p []byte) (int, error) {
	select {
	case err := <-f.reads:
		if err != nil {
			return 0, err
		}
		return copy(p, "message"), nil
	case <-f.closed:
		return 0, io.ErrClosedPipe
	}
}

func (f *fakeSub) Close() error {
	if f.closes.Add(1) == 1 {
		close(f.closed)
	}
	return nil
}

// Each notification, and each loss of notifications, is one call back;
// ending ctx closes the subscription and ends the watch.
func TestWatchCallsBackPerNotification(t *testing.T) {
	sub := newFakeSub()
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- watch(ctx, sub, func() { calls.Add(1) }) }()
	sub.reads <- nil
	sub.reads <- errLost
	sub.reads <- nil
	require.Eventually(t, func() bool { return calls.Load() == 3 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, int32(1), sub.closes.Load(), "closed once")
	require.Equal(t, int32(3), calls.Load(), "no call back for the read Close ended")
}

// A subscription that fails otherwise ends the watch with its error and
// no call back: Watch then polls.
func TestWatchEndsOnReadError(t *testing.T) {
	sub := newFakeSub()
	broken := errors.New("broken")
	done := make(chan error)
	go func() { done <- watch(context.Background(), sub, func() { t.Error("called back") }) }()
	sub.reads <- broken
	require.ErrorIs(t, <-done, broken)
	require.Equal(t, int32(1), sub.closes.Load())
}

// Without a subscription, one call back per interval, none after ctx ends.
func TestPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- poll(ctx, PollInterval, func() { calls.Add(1) }) }()
		time.Sleep(3*PollInterval + PollInterval/2)
		synctest.Wait()
		require.Equal(t, int32(3), calls.Load())
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

// On Linux an unprivileged process can subscribe, and ending ctx ends
// Watch promptly (closing the socket unblocks its Read).
func TestWatchSubscribes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the subscription is Linux's; elsewhere Watch polls (TestPoll)")
	}
	sub, err := subscribe()
	require.NoError(t, err)
	require.NoError(t, sub.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, Watch(ctx, func() {}), context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}
