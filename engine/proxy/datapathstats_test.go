package proxy_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// Stats.DataPath: nothing before the first connection (no executor yet);
// after echoes through one tunnel, the workers, the writes toward the
// target and the reads from it have all counted. Other tests' proxies in
// this process share the socket counters, so only lower bounds hold here.
func TestDataPathStats(t *testing.T) {
	e := startProxy(t, proxy.Config{Workers: 3})
	dp := e.proxy.Stats().DataPath
	require.Zero(t, dp.Workers, "no executor before the first connection")
	require.Zero(t, dp.WorkerTurns)

	u := dialUDP(t, e.dial(t), e.echo.Addr().String())
	const echoes = 3
	for range echoes {
		echoOnce(t, u, []byte("data path"))
	}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		dp := e.proxy.Stats().DataPath
		assert.Equal(ct, 3, dp.Workers)
		assert.GreaterOrEqual(ct, dp.WorkerDatagrams, uint64(echoes))
		assert.GreaterOrEqual(ct, dp.WorkerTurns, uint64(1))
		if runtime.GOOS == "linux" {
			assert.GreaterOrEqual(ct, dp.TargetWriteDatagrams, uint64(echoes))
			assert.GreaterOrEqual(ct, dp.TargetWriteSyscalls, uint64(1))
			assert.GreaterOrEqual(ct, dp.TargetReadDatagrams, uint64(echoes))
			assert.GreaterOrEqual(ct, dp.TargetReadSyscalls, uint64(1))
		}
		// The outbound sender's fields read 0 until it fills them.
	}, 5*time.Second, 10*time.Millisecond)
}
