package engine

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// Datagrams that overtake their request are held and handed over, in order,
// when the session appears.
func TestHeldDatagramsReachLateSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRouter(Options{Hold: HoldOptions{Max: 8, Timeout: 50 * time.Millisecond}, Logger: discardLogger()})
		defer r.Close()
		for i := range 3 {
			require.Equal(t, Held, r.Dispatch(0, []byte(fmt.Sprint(i))))
		}
		synctest.Wait() // the control plane collects them
		time.Sleep(20 * time.Millisecond)
		h := newRecorder()
		_, err := r.Register(0, h)
		require.NoError(t, err)
		require.Equal(t, Queued, r.Dispatch(0, []byte("3")))
		synctest.Wait()
		var got []string
		for _, d := range h.datagrams() {
			got = append(got, string(d))
		}
		require.Equal(t, []string{"0", "1", "2", "3"}, got)
		st := checkAccounting(t, r, 4)
		require.Equal(t, uint64(3), st.Held)
		require.Equal(t, uint64(3), st.HeldDelivered)
		require.Zero(t, st.HeldNow)
	})
}

// Held datagrams also reach a session that is started (pending) rather than
// registered, counted against its pending buffer.
func TestHeldDatagramsReachPendingSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRouter(Options{
			Hold:          HoldOptions{Max: 8},
			PendingBuffer: 2,
			Kinds:         registryWith("x", instantKind{made: make(chan *recorder, 1)}),
			Logger:        discardLogger(),
		})
		defer r.Close()
		for range 3 {
			require.Equal(t, Held, r.Dispatch(0, []byte("x")))
		}
		synctest.Wait()
		_, err := r.StartSession(context.Background(), 0, Args{})
		require.NoError(t, err)
		synctest.Wait()
		st := checkAccounting(t, r, 3)
		require.Equal(t, uint64(2), st.HeldDelivered)
		require.Equal(t, uint64(2), st.Delivered)
		// The third did not fit the pending buffer: its session existed,
		// so it is a refused handover, not an unknown stream.
		require.Equal(t, uint64(1), st.DroppedHeldRefused, "the third did not fit the pending buffer")
		require.Zero(t, st.DroppedUnknown)
	})
}

// Unclaimed datagrams expire after the hold timeout and are counted.
func TestHeldDatagramsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRouter(Options{Hold: HoldOptions{Max: 8, Timeout: 50 * time.Millisecond}, Logger: discardLogger()})
		defer r.Close()
		require.Equal(t, Held, r.Dispatch(4, []byte("lost")))
		synctest.Wait()
		require.Equal(t, uint64(1), r.Stats().HeldNow)
		time.Sleep(49 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, uint64(1), r.Stats().HeldNow, "expired early")
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		st := checkAccounting(t, r, 1)
		require.Zero(t, st.HeldNow)
		require.Equal(t, uint64(1), st.DroppedUnknown)

		// A session that appears after the expiry gets nothing.
		h := newRecorder()
		_, err := r.Register(4, h)
		require.NoError(t, err)
		synctest.Wait()
		require.Empty(t, h.datagrams())
	})
}

// The hold queue is bounded: a flood for unknown streams holds at most
// 2×Max datagrams (Max in flight to the control plane, Max collected) and
// drops the rest, counted.
func TestHoldQueueIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const max = 8
		r := NewRouter(Options{Hold: HoldOptions{Max: max, Timeout: time.Second}, Logger: discardLogger()})
		defer r.Close()
		var held int
		for i := range 1000 {
			if r.Dispatch(uint64(i%50)*4, []byte("x")) == Held {
				held++
			}
			if i%100 == 0 {
				synctest.Wait()
			}
		}
		synctest.Wait()
		st := checkAccounting(t, r, 1000)
		require.LessOrEqual(t, st.HeldNow, uint64(2*max))
		require.LessOrEqual(t, st.HeldNow, uint64(max), "the ring and the list share the bound")
		require.Equal(t, uint64(held), st.Held)
		t.Logf("held %d of 1000, %d still held, %d dropped as unknown", held, st.HeldNow, st.DroppedUnknown)

		// Close drops whatever is held, counted.
		r.Close()
		st = checkAccounting(t, r, 1000)
		require.Zero(t, st.HeldNow)
	})
}

// The hold queue's ring and list share one bound and one policy: once Max
// datagrams are held, the newest is dropped, and the oldest reach their
// session.
func TestHoldQueueDropsNewest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const max = 4
		r := NewRouter(Options{Hold: HoldOptions{Max: max, Timeout: time.Second}, Logger: discardLogger()})
		defer r.Close()
		for i := range 2 * max {
			r.Dispatch(0, []byte(fmt.Sprint(i)))
			synctest.Wait() // the control plane moves each into the list
		}
		st := checkAccounting(t, r, 2*max)
		require.Equal(t, uint64(max), st.HeldNow)
		require.Equal(t, uint64(max), st.DroppedUnknown)
		h := newRecorder()
		_, err := r.Register(0, h)
		require.NoError(t, err)
		synctest.Wait()
		var got []string
		for _, d := range h.datagrams() {
			got = append(got, string(d))
		}
		require.Equal(t, []string{"0", "1", "2", "3"}, got)
	})
}
