package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/internal/udpio"
)

// countingSender stands in for the QUIC connection: it counts and keeps
// nothing (quic-go's SendDatagram copies, so the tunnel may reuse its buffer).
type countingSender struct{ n atomic.Uint64 }

func (c *countingSender) SendDatagram([]byte) error { c.n.Add(1); return nil }

// echoAllocs sends batch through handle once to warm up, waits for its
// echoes at snd, then returns the allocations per further batch and its
// echoes, counted over 200 runs.
func echoAllocs(t *testing.T, handle func([][]byte), batch [][]byte, snd *countingSender) float64 {
	t.Helper()
	handle(batch) // warm up: buffers, pools
	require.Eventually(t, func() bool { return snd.n.Load() == uint64(len(batch)) }, 5*time.Second, time.Millisecond, "echoes")
	return testing.AllocsPerRun(200, func() {
		before := snd.n.Load()
		handle(batch)
		deadline := time.Now().Add(2 * time.Second)
		for snd.n.Load() < before+uint64(len(batch)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Microsecond)
		}
	})
}

// newTestTunnel builds a CONNECT-UDP tunnel to an echo target on loopback,
// outside any proxy connection, so that its two data paths can be measured.
func newTestTunnel(t testing.TB) (*udpTunnel, *countingSender) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { es.Close() })
	snd := &countingSender{}
	r := engine.NewRouter(engine.Options{Sender: snd, Logger: discardLogger()})
	t.Cleanup(func() { r.Close() })
	p, err := New(Config{Logger: discardLogger(), IdleTimeout: -1})
	require.NoError(t, err)
	conn, err := udpio.Dial(context.Background(), es.Addr())
	require.NoError(t, err)
	s, err := r.Register(0, nil) // a session for SendDatagram's stream ID
	require.NoError(t, err)
	p.cfg.MaxDatagramPayload = 1500
	poller, err := udpio.NewPoller()
	if err != nil {
		poller = nil // not Linux: the tunnel reads with a goroutine
	} else {
		t.Cleanup(func() { poller.Close() })
	}
	out := newSender(snd, &p.counters)
	t.Cleanup(out.close)
	req := &Request{datagrams: true, ended: make(chan struct{})}
	tun, err := newUDPTunnel(p, s, req, conn, out, poller)
	require.NoError(t, err)
	t.Cleanup(func() { tun.Close(engine.ErrUnregistered) })
	return tun, snd
}

// The tunnel's data paths allocate nothing per datagram in steady state:
// client → target (HandleDatagrams: context ID check, GSO/sendmmsg) and
// target → client (the poller: recvmmsg into pooled buffers, header written
// in place, the reply ring; the sender: SendDatagram).
func TestUDPTunnelDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	tun, snd := newTestTunnel(t)
	// A connection's amplification budget, as generous as a client that
	// sent 1,200 bytes for each datagram: the budget's refill runs too.
	var rx uint64
	tun.amp = newAmpBudget(3, 0, func() uint64 { rx += 8 * 1200; return rx })
	tun.connRate = newRateLimits(DefaultRateConnDatagrams, DefaultRateConnBytes, DefaultRateBurst) // and the rate check
	batch := make([][]byte, 8)
	for i := range batch {
		batch[i] = append([]byte{0}, make([]byte, 1200)...) // context ID 0 + payload
	}
	// AllocsPerRun counts every goroutine's allocations, so this covers
	// the poller and the sender too.
	require.Zero(t, echoAllocs(t, tun.HandleDatagrams, batch, snd), "allocations per batch of 8 datagrams, both directions")
	require.Equal(t, uint64(202*8), tun.c.toTarget.Load()) // our warm-up, AllocsPerRun's, 200 runs
}
