package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
)

// TestTransportsSpread runs masqroute on two steered transports with 16
// connections, each from its own socket: the kernel's hash puts their
// Initials on both transports, and after the handshake the steering keeps
// every packet on its connection's transport (no strays).
func TestTransportsSpread(t *testing.T) {
	env, err := e2e.StartWith(e2e.Masqroute, e2e.ServerConfig{Transports: 2})
	require.NoError(t, err)
	defer func() { require.NoError(t, env.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := env.Run(ctx, loadgen.Config{
		Tunnels: 32, Conns: 16, Size: 1200, Window: 2,
		Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, Drain: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Positive(t, res.Received)
	shares := res.DataPath.TransportShares()
	t.Logf("packet shares %.1f %%, strays %d", shares, res.Drops[e2e.StrayDrop])
	// 16 connections all on one socket: probability 2^-15.
	require.Len(t, shares, 2)
	require.Positive(t, shares[0])
	require.Positive(t, shares[1])
	require.Zero(t, res.Drops[e2e.StrayDrop], "a packet reached a transport without its connection")
}

// TestTransportsAffinity: with Affinity, a transport's tunnels go to the
// executor worker of its index, as the daemon places them — on one
// transport, every tunnel on worker 0; without it they are spread
// round-robin over the workers.
func TestTransportsAffinity(t *testing.T) {
	for _, affinity := range []bool{true, false} {
		env, err := e2e.StartWith(e2e.Masqroute, e2e.ServerConfig{Transports: 1, Affinity: affinity})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := env.Run(ctx, loadgen.Config{
			Tunnels: 8, Conns: 2, Size: 100, Window: 1,
			Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond, Drain: 100 * time.Millisecond,
		})
		cancel()
		require.NoError(t, err)
		require.Positive(t, res.Received)
		placed := env.Proxy.Stats().DataPath.WorkerPlaced
		require.NoError(t, env.Close())
		if len(placed) < 2 {
			t.Skipf("%d executor worker: nothing to place", len(placed))
		}
		t.Logf("affinity %v: tunnels placed per worker %v", affinity, placed)
		if affinity {
			require.Equal(t, uint64(8), placed[0])
			for _, n := range placed[1:] {
				require.Zero(t, n)
			}
		} else {
			require.Less(t, placed[0], uint64(8), "round-robin leaves tunnels to the other workers")
		}
	}
}
