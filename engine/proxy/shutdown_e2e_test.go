package proxy_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/proxy"
)

// A goAwayResult is what a client's watch of the proxy's control stream
// saw: the first GOAWAY's ID, or the error that ended the stream first.
type goAwayResult struct {
	id  uint64
	err error
}

// watchGoAway takes the proxy's unidirectional streams on qc, whose
// http3.RawClientConn leaves them to the caller, and reports once on the
// returned channel: the control stream's first GOAWAY, or the error that
// ended the stream without one (the connection closed).
func watchGoAway(t testing.TB, qc *quic.Conn) <-chan goAwayResult {
	res := make(chan goAwayResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			str, err := qc.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() { readGoAway(str, res) })
		}
	})
	t.Cleanup(func() {
		qc.CloseWithError(0x100, "")
		wg.Wait()
	})
	return res
}

func readGoAway(str *quic.ReceiveStream, res chan<- goAwayResult) {
	typ, err := wire.ReadStreamType(str)
	if err != nil {
		return
	}
	if typ != wire.StreamTypeControl {
		io.Copy(io.Discard, str) // QPACK streams
		return
	}
	cr := wire.NewControlStreamReader(str, wire.RoleServer)
	for {
		f, err := cr.Next()
		if err != nil {
			res <- goAwayResult{err: err}
			return
		}
		if f.Type == wire.FrameGoAway {
			res <- goAwayResult{id: f.GoAwayID}
			return
		}
	}
}

// A connection whose setup races with Shutdown still gets its GOAWAY while
// the drain lasts (issue 11). The hooks force the interleaving that lost
// it: the connection is listed, Shutdown walks the list before the
// connection's h3 handle is published (so the walk has nothing to send the
// GOAWAY on), and only then does ServeConn publish the handle. ServeConn
// must then see draining and send the GOAWAY itself; before it did, the
// connection sat without one until Shutdown's deadline closed it.
func TestShutdownGoAwayReachesConnSetUpDuringWalk(t *testing.T) {
	const drain = 3 * time.Second
	var listings atomic.Int32
	listed := make(chan struct{}) // B is listed, its handle not yet published
	walked := make(chan struct{}) // Shutdown has told every listed connection goAway
	endWalk := sync.OnceFunc(func() { close(walked) })
	env := startProxySetup(t, proxy.Config{}, &quic.Config{MaxIdleTimeout: 5 * time.Second}, func(p *proxy.Proxy) {
		proxy.SetShutdownHooks(p, func() {
			if listings.Add(1) == 2 { // the first is A's
				close(listed)
				<-walked
			}
		}, endWalk)
	})
	t.Cleanup(endWalk) // before the proxy's Close: a test that failed early leaves no ServeConn waiting

	// A holds a tunnel, so Shutdown drains until the tunnel ends.
	a := env.rawTunnelDial(t)
	goAwayA := watchGoAway(t, a.qc)
	str := a.open(t)
	require.Equal(t, 200, a.connect(t, str, env.echo.Addr().String()).StatusCode)

	// B is set up while Shutdown runs: held between listed and published.
	b := env.rawTunnelDial(t)
	goAwayB := watchGoAway(t, b.qc)
	select {
	case <-listed:
	case <-time.After(5 * time.Second):
		t.Fatal("B was never listed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.proxy.Shutdown(ctx) }()

	for _, w := range []struct {
		name string
		ch   <-chan goAwayResult
		id   uint64 // the first request stream the GOAWAY refuses
	}{
		{"A (published before the walk)", goAwayA, 4}, // its tunnel, stream 0, goes on
		{"B (published after the walk)", goAwayB, 0},
	} {
		select {
		case r := <-w.ch:
			require.NoError(t, r.err, "connection %s: control stream ended without a GOAWAY", w.name)
			require.Equal(t, w.id, r.id, "connection %s: GOAWAY's stream ID", w.name)
		case err := <-shutdown:
			t.Fatalf("Shutdown ended the drain (%v) and connection %s never got a GOAWAY", err, w.name)
		}
	}

	// A's tunnel ends: the drain ends with it, well before the deadline,
	// and every connection is closed.
	a.qc.CloseWithError(0x100, "")
	select {
	case err := <-shutdown:
		require.NoError(t, err)
	case <-time.After(drain):
		t.Fatal("Shutdown still draining after the last tunnel ended")
	}
	require.Zero(t, env.proxy.Stats().Conns)
	select {
	case <-b.qc.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("B still open after Shutdown returned")
	}
}
