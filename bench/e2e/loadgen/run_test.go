package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHeaderRoundTrip(t *testing.T) {
	b := make([]byte, HeaderLen+10)
	h := header{tag: 0xdeadbeef, tunnel: 7, seq: 1 << 40, sent: 1234567 * time.Microsecond}
	h.put(b)
	got, ok := parseHeader(b)
	require.True(t, ok)
	require.Equal(t, h, got)
	_, ok = parseHeader(b[:HeaderLen-1])
	require.False(t, ok)
}

func TestAutoWindow(t *testing.T) {
	for tunnels, want := range map[int]int{1: 64, 4: 64, 5: 52, 100: 3, 256: 1, 1000: 1} {
		require.Equal(t, want, AutoWindow(tunnels), "tunnels=%d", tunnels)
	}
}

func TestClosedLoopKeepsWindow(t *testing.T) {
	tr := &fakeTransport{queue: 64, maxInFlight: 4}
	res, err := Run(context.Background(), Config{
		Transport: tr, Tunnels: 8, Conns: 2, Size: 100, Window: 4,
		Warmup: 20 * time.Millisecond, Duration: 200 * time.Millisecond, Drain: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	// Only a window written off as lost, and answered late, lets a
	// tunnel go over its window (a stall of the race detector can do it).
	if tr.flows.overflow.Load() {
		require.Positive(t, res.LossTimeouts, "a tunnel had more than its window in flight")
	}
	require.Equal(t, "closed", res.Mode)
	require.Equal(t, 4, res.Window)
	require.Equal(t, 2, res.Conns)
	require.Positive(t, res.Sent)
	require.Equal(t, res.Sent, res.Received)
	require.Zero(t, res.Lost)
	require.Zero(t, res.Stray)
	require.Equal(t, res.Received, uint64(res.Latency.Count))
	require.InDelta(t, 0.2, res.Duration, 1e-9)
	require.InDelta(t, res.RecvRate*100*8/1e6, res.MbitIn, 1e-6)
	// Hops: generator sent, the fake's probe, generator received.
	require.Len(t, res.Hops, 3)
	require.Equal(t, "generator: sent", res.Hops[0].Name)
	require.Equal(t, "fake: sent", res.Hops[1].Name)
	require.Equal(t, "generator: received", res.Hops[2].Name)
}

func TestClosedLoopRecoversFromLoss(t *testing.T) {
	tr := &fakeTransport{queue: 64, drop: func(n int) bool { return n%10 == 9 }}
	res, err := Run(context.Background(), Config{
		Transport: tr, Tunnels: 2, Size: 64, Window: 2,
		Duration: 300 * time.Millisecond, Drain: 20 * time.Millisecond, LossTimeout: 5 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Positive(t, res.Lost)
	// Every tenth datagram is lost; windows keep moving after each loss.
	require.InDelta(t, 10, res.LossPct, 1.5)
	require.Positive(t, res.LossTimeouts)
	require.Greater(t, res.Sent, uint64(100))
}

func TestOpenLoopRate(t *testing.T) {
	tr := &fakeTransport{queue: 1024}
	const rate = 5000
	res, err := Run(context.Background(), Config{
		Transport: tr, Tunnels: 10, Conns: 2, Size: 64, Rate: rate,
		Warmup: 50 * time.Millisecond, Duration: 400 * time.Millisecond, Drain: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Equal(t, "open", res.Mode)
	require.Equal(t, float64(rate), res.OfferedRate)
	// Datagrams are counted by the time they were due: exactly the
	// schedule's share of the measured interval.
	require.InDelta(t, rate*0.4, float64(res.Sent), 2)
	require.Equal(t, res.Sent, res.Received)
	require.NotNil(t, res.SendLag)
}

func TestRunStopsEarlyOnCancel(t *testing.T) {
	tr := &fakeTransport{queue: 64}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, Config{Transport: tr, Tunnels: 2, Size: 64, Warmup: 50 * time.Millisecond, Duration: time.Hour})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.InDelta(t, 0.1, res.Duration, 0.05)
	require.Positive(t, res.Received)

	// Cancelled during the warm-up: an error.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, Config{Transport: tr, Warmup: time.Second, Duration: time.Second})
	require.ErrorIs(t, err, context.Canceled)
}

func TestRunRejectsBadConfig(t *testing.T) {
	tr := &fakeTransport{queue: 1}
	for _, cfg := range []Config{
		{},
		{Transport: tr, Size: HeaderLen - 1},
		{Transport: tr, Rate: -1},
		{Transport: tr, Size: 70000},
	} {
		_, err := Run(context.Background(), cfg)
		require.Error(t, err)
	}
}

func TestDelta(t *testing.T) {
	before := Counters{
		Hops:  []Hop{{Stage: StageReceived, Name: "r", Count: 10}, {Stage: StageSent, Name: "s", Count: 10}},
		Drops: map[string]uint64{"a": 1, "b": 5},
	}
	after := Counters{
		Hops:  []Hop{{Stage: StageReceived, Name: "r", Count: 15}, {Stage: StageSent, Name: "s", Count: 30}, {Stage: StageProxyIn, Name: "p", Count: 3}},
		Drops: map[string]uint64{"a": 4, "b": 5, "c": 2},
	}
	d := delta(before, after)
	require.Equal(t, []Hop{{Stage: StageSent, Name: "s", Count: 20}, {Stage: StageProxyIn, Name: "p", Count: 3}, {Stage: StageReceived, Name: "r", Count: 5}}, d.Hops)
	require.Equal(t, map[string]uint64{"a": 3, "c": 2}, d.Drops)
}

func TestStageText(t *testing.T) {
	for s := StageSent; s <= StageReceived; s++ {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var got Stage
		require.NoError(t, got.UnmarshalText(b))
		require.Equal(t, s, got)
	}
	var s Stage
	require.Error(t, s.UnmarshalText([]byte("nowhere")))
	require.Equal(t, "stage(?)", Stage(99).String())
}
