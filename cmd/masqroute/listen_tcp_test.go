package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTCPPortTakenRefused: another process's listener with SO_REUSEPORT on
// the port (as a second daemon of the same user would have) makes the
// daemon refuse to start its TCP carriers, instead of joining that
// listener and taking a share of its clients.
func TestTCPPortTakenRefused(t *testing.T) {
	lc := net.ListenConfig{Control: reusePort}
	other, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer other.Close()
	port := other.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	err = run(ctx, []string{"-dev", "-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-metrics", "", "-pprof", "", "-gops=false"}, &out, &errOut)
	require.Error(t, err, "the daemon started on a taken TCP port\nstderr:\n%s", errOut.String())
	require.Contains(t, err.Error(), fmt.Sprintf("TCP port %d is in use", port))
	require.NoError(t, ctx.Err(), "run returned only at the test's deadline")
}
