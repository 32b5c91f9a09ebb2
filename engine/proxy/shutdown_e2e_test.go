package proxy_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/proxy"
)

// A goAwayResult is what a client's watch of the proxy's control stream
// saw: the first GOAWAY's ID, or the error that ended the stream first.
type goAwayResult struct {
	id  uint64
	err error
}

// errNoControlStream: the connection closed before the proxy opened its
// control stream, so before ServeConn set it up (it was refused at entry).
var errNoControlStream = errors.New("closed before the proxy's control stream")

// watchGoAway takes the proxy's unidirectional streams on qc, whose
// http3.RawClientConn (if any) leaves them to the caller, and reports once
// on the returned channel: the control stream's first GOAWAY, the error
// that ended the stream without one, or errNoControlStream.
func watchGoAway(t testing.TB, qc *quic.Conn) <-chan goAwayResult {
	res := make(chan goAwayResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		control := false
		for {
			str, err := qc.AcceptUniStream(context.Background())
			if err != nil {
				if !control {
					res <- goAwayResult{err: errNoControlStream}
				}
				return
			}
			typ, err := wire.ReadStreamType(str)
			switch {
			case err != nil:
			case typ == wire.StreamTypeControl && !control:
				control = true
				wg.Go(func() { readGoAway(str, res) })
			default:
				wg.Go(func() { io.Copy(io.Discard, str) }) // QPACK streams
			}
		}
	})
	t.Cleanup(func() {
		qc.CloseWithError(0x100, "")
		wg.Wait()
	})
	return res
}

// readGoAway reads a control stream until its first GOAWAY.
func readGoAway(str *quic.ReceiveStream, res chan<- goAwayResult) {
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

	endDrain(t, env.proxy, a, shutdown, drain)
	select {
	case <-b.qc.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("B still open after Shutdown returned")
	}
}

// Shutdown concurrent with a stream of connection setups, under the race
// detector in `make test`: every connection the proxy set up gets a GOAWAY
// while the drain lasts, and every other one was refused at entry (closed
// before the proxy opened its control stream). Bounded: at most 200
// connections, dials of 500 ms at most, a 3 s drain; a dialer stops at its
// first failed dial, soon after the listener closed, so about 20 connections
// are dialled in all.
func TestShutdownRacingConnSetupsAllGetGoAway(t *testing.T) {
	const (
		dialers   = 8
		perDialer = 25
		drain     = 3 * time.Second
	)
	// An explicit transport, as the daemon's: closing it at the end ends
	// the closed connections' lingering state (3 PTOs each) at once.
	p, addr := startProxyTransport(t, proxy.Config{})
	env := &proxyEnv{t: t, proxy: p, addr: addr}
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { es.Close() })
	a := env.rawTunnelDial(t) // its tunnel holds the drain open
	str := a.open(t)
	require.Equal(t, 200, a.connect(t, str, es.Addr().String()).StatusCode)

	var (
		mu      sync.Mutex
		watches []<-chan goAwayResult
		dialing sync.WaitGroup
	)
	for range dialers {
		dialing.Go(func() {
			for range perDialer {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				qc, err := quic.DialAddr(ctx, env.addr, clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
				cancel()
				if err != nil {
					return // the listener has closed (or the dial was slow)
				}
				w := watchGoAway(t, qc)
				mu.Lock()
				watches = append(watches, w)
				mu.Unlock()
			}
		})
	}
	waitFor(t, "two connections per dialer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(watches) >= 2*dialers
	})
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.proxy.Shutdown(ctx) }()
	dialing.Wait()

	var goAways, refused int
	for i, w := range watches {
		select {
		case r := <-w:
			if errors.Is(r.err, errNoControlStream) {
				refused++
				continue
			}
			require.NoError(t, r.err, "connection %d: control stream ended without a GOAWAY", i)
			goAways++
		case err := <-shutdown:
			t.Fatalf("Shutdown ended the drain (%v) and connection %d was left without a GOAWAY", err, i)
		}
	}
	t.Logf("%d connections: %d got a GOAWAY, %d refused at entry", len(watches), goAways, refused)
	require.NotZero(t, goAways)

	endDrain(t, env.proxy, a, shutdown, drain)
}

// endDrain closes a, whose tunnel is the last one, and checks that the
// drain ends with it, well before its deadline, with every connection
// closed.
func endDrain(t *testing.T, p *proxy.Proxy, a *rawTunnelConn, shutdown <-chan error, drain time.Duration) {
	t.Helper()
	a.qc.CloseWithError(0x100, "")
	select {
	case err := <-shutdown:
		require.NoError(t, err)
	case <-time.After(drain):
		t.Fatal("Shutdown still draining after the last tunnel ended")
	}
	require.Zero(t, p.Stats().Conns)
}
