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
