package proxy_test

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// rawQUIC dials the proxy with QUIC only: no HTTP/3 client, no SETTINGS.
func rawQUIC(t *testing.T, env *proxyEnv) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, env.addr, clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { qc.CloseWithError(0x100, "") })
	return qc
}

// waitGoroutines waits until cond holds for the goroutine count, or fails
// after d.
func waitGoroutines(t *testing.T, d time.Duration, what string, cond func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond(runtime.NumGoroutine()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines after %v", what, runtime.NumGoroutine(), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledGoroutines waits (at most 2 s) until the goroutine count holds
// still for 100 ms, and returns it.
func settledGoroutines() int {
	n, still := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(2 * time.Second); still < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			still++
		} else {
			n, still = m, 0
		}
	}
	return n
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// 1,000 streams that never finish their request head: each holds a
// goroutine only until the header deadline, then is reset; goroutines and
// memory come back to where they were, while the connection stays open.
func TestStalledRequestHeadsAreReset(t *testing.T) {
	const timeout = 300 * time.Millisecond
	env := startProxy(t, proxy.Config{HeaderTimeout: timeout})
	qc := rawQUIC(t, env)
	time.Sleep(50 * time.Millisecond) // the connection's own goroutines
	baseG, baseHeap := runtime.NumGoroutine(), heapInUse()

	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range n {
		str, err := qc.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = str.Write([]byte{0x01}) // the type of a HEADERS frame, and nothing more
		require.NoError(t, err)
	}
	waitGoroutines(t, 5*time.Second, "the streams were served", func(g int) bool { return g >= baseG+n/2 })
	start := time.Now()
	waitGoroutines(t, timeout+10*time.Second, "back to baseline", func(g int) bool { return g <= baseG+5 })
	t.Logf("1,000 stalled streams released %v after they pinned their goroutines", time.Since(start))
	require.Less(t, heapInUse(), baseHeap+8<<20, "heap back near its baseline")
	require.NoError(t, qc.Context().Err(), "the connection itself stays open")
}

// Unidirectional streams that never finish their type: quic-go's
// MaxIncomingUniStreams (8, from QUICConfig) bounds how many a client can
// open, and each holds a goroutine only until the header deadline, while
// the connection stays open. (The stream's credit is not released: quic-go
// grants it back only once the stream has completed, and the proxy leaves
// a stalled one open, so the client keeps the eight places it spent.)
func TestStalledUniStreamTypesAreBounded(t *testing.T) {
	const (
		// Long enough that all eight are waiting at once even when the
		// race detector and a loaded machine stagger their starts.
		timeout = 2 * time.Second
		limit   = 8 // maxIncomingUniStreams
	)
	// The idle timeout (10 s, rawQUIC's) is well past the wait below: the
	// goroutines must end at the header deadline, not with the connection.
	env := startProxyQUIC(t, proxy.Config{HeaderTimeout: timeout}, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	qc := rawQUIC(t, env)
	baseG := settledGoroutines() // the connection's own, and earlier tests' leaving ones gone

	for range limit {
		str, err := qc.OpenUniStream()
		require.NoError(t, err)
		_, err = str.Write([]byte{0x40}) // the first byte of a two-byte stream type, and nothing more
		require.NoError(t, err)
	}
	_, err := qc.OpenUniStream()
	require.ErrorAs(t, err, new(*quic.StreamLimitReachedError), "a ninth stream")
	// One goroutine per stream; the baseline can hold a couple of
	// transient goroutines (quic-go's, a leaving test's) that end meanwhile.
	waitGoroutines(t, 5*time.Second, "the streams were served", func(g int) bool { return g >= baseG+limit-2 })
	waitGoroutines(t, timeout+3*time.Second, "back to baseline", func(g int) bool { return g <= baseG+2 })
	require.NoError(t, qc.Context().Err(), "the connection itself stays open")
}

// Complete tunnel requests from a client that never sends SETTINGS count
// against the tunnel limit at once (so tunnels_active shows them, and one
// past the limit is refused without waiting), and are refused when the
// SETTINGS deadline passes.
func TestRequestsWithoutSettingsAreBounded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	const limit = 20
	env := startProxy(t, proxy.Config{HeaderTimeout: timeout, MaxTunnelsPerConn: limit})
	qc := rawQUIC(t, env)
	var hb bytes.Buffer
	enc := qpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "CONNECT"}, {":protocol", "connect-udp"}, {":scheme", "https"},
		{":authority", env.addr}, {":path", udpPath(env.echo.Addr().Addr().String(), itoa(env.echo.Addr().Port()))},
		{"capsule-protocol", "?1"},
	} {
		require.NoError(t, enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	frame := quicvarint.Append(quicvarint.Append(nil, 0x01), uint64(hb.Len()))
	frame = append(frame, hb.Bytes()...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var strs []*quic.Stream
	for range limit + 1 {
		str, err := qc.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = str.Write(frame)
		require.NoError(t, err)
		strs = append(strs, str)
	}
	waitFor(t, "the limit counts waiting requests", func() bool {
		st := env.proxy.Stats()
		return st.Tunnels == limit && st.Rejected[503] == 1
	})
	// Every stream gets its answer (a 503 or, after the deadline, a 400)
	// and its end.
	for _, str := range strs {
		str.SetReadDeadline(time.Now().Add(timeout + 3*time.Second))
		_, err := io.ReadAll(str)
		require.NoError(t, err)
	}
	st := env.proxy.Stats()
	require.Equal(t, uint64(limit), st.Rejected[400])
	require.Zero(t, st.Tunnels)
	require.Zero(t, st.TunnelsOpened)
}
