package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

var soakDuration = flag.Duration("soak", 3*time.Second, "how long TestSoak runs (make soak: 2m)")

// soakCounts are the client side's totals.
type soakCounts struct {
	tunnels, conns, sent, received, lost atomic.Uint64
	clientDispatched, clientDelivered    atomic.Uint64
	clientDropped                        atomic.Uint64
}

// TestSoak opens and closes tunnels continuously, with traffic on each, over
// connections that come and go, for -soak (3 s by default; `make soak` runs
// 2 minutes). At the end it checks that goroutines, file descriptors and the
// heap are back near where they started, and that every datagram is
// accounted for at every hop.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	env := startProxy(t, proxy.Config{})
	// Warm up once so that lazily started runtime and quic-go goroutines
	// are in the baseline.
	warm := env.dial(t)
	echoOnce(t, dialUDP(t, warm, env.echo.Addr().String()), []byte("warm"))
	warm.Close()
	waitFor(t, "warm-up gone", func() bool { return env.proxy.Stats().Conns == 0 })
	baseGoroutines, baseFDs, baseHeap := resources()
	base := env.proxy.Stats()
	baseEchoRecv, baseEchoSent := env.echo.Received.Load(), env.echo.Sent.Load()

	const (
		workers          = 6
		tunnelsPerConn   = 20
		datagramsPerTun  = 16
		window           = 4
		perTunnelTimeout = 2 * time.Second
	)
	var c soakCounts
	deadline := time.Now().Add(*soakDuration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := soakConn(env, w, tunnelsPerConn, datagramsPerTun, window, perTunnelTimeout, &c, deadline); err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "connections closed", func() bool {
		st := env.proxy.Stats()
		return st.Conns == 0 && st.Tunnels == 0
	})
	waitFor(t, "counters settle", func() bool {
		st := env.proxy.Stats()
		return st.ToTarget-base.ToTarget == env.echo.Received.Load()-baseEchoRecv &&
			st.ToClient+st.DropReturnOversize+st.DropReturnSendError-base.ToClient-base.DropReturnOversize-base.DropReturnSendError >=
				env.echo.Sent.Load()-baseEchoSent
	})

	st := env.proxy.Stats()
	t.Logf("%v: %d connections, %d tunnels, %d datagrams sent, %d received, %d lost",
		*soakDuration, c.conns.Load(), c.tunnels.Load(), c.sent.Load(), c.received.Load(), c.lost.Load())

	// Every datagram of the soak (counters minus the warm-up), hop by hop.
	d := func(now, then uint64) uint64 { return now - then }
	dispatched := d(st.Router.Dispatched, base.Router.Dispatched)
	delivered := d(st.Router.Delivered, base.Router.Delivered)
	toTarget := d(st.ToTarget, base.ToTarget)
	toClient := d(st.ToClient, base.ToClient)
	echoRecv, echoSent := d(env.echo.Received.Load(), baseEchoRecv), d(env.echo.Sent.Load(), baseEchoSent)
	require.Equal(t, c.sent.Load(), dispatched, "client → proxy (QUIC)")
	require.Equal(t, dispatched, delivered+d(st.Router.Dropped(), base.Router.Dropped()), "proxy router")
	require.Zero(t, st.Router.Queued+st.Router.HeldNow)
	tunnelDrops := func(s proxy.Stats) uint64 {
		return s.DropMalformed + s.DropUnknownContext + s.DropOversize + s.DropSendError
	}
	require.Equal(t, delivered, toTarget+d(tunnelDrops(st), tunnelDrops(base)), "tunnel → target socket")
	require.Equal(t, toTarget, echoRecv, "target socket → echo (kernel)")
	returnDrops := func(s proxy.Stats) uint64 { return s.DropReturnOversize + s.DropReturnSendError }
	require.Equal(t, echoSent, toClient+d(returnDrops(st), returnDrops(base)), "echo → proxy → QUIC")
	require.Equal(t, toClient, c.clientDispatched.Load(), "proxy → client (QUIC)")
	require.Equal(t, c.clientDispatched.Load(), c.clientDelivered.Load()+c.clientDropped.Load(), "client router")
	require.Equal(t, c.received.Load()+c.lost.Load(), c.sent.Load())
	require.Equal(t, d(st.TunnelsOpened, base.TunnelsOpened), c.tunnels.Load())

	// Resources back near the start. quic-go keeps a closed connection's
	// state for a few seconds (its draining period), so the heap takes that
	// long to come back down: right after a 1-minute soak it stood 6 MiB
	// above its start, 5 s later below it (stop 18). A leak of a few bytes
	// per tunnel over a soak's tens of thousands of tunnels passes 1 MiB.
	// Under the race detector the loop below has seen the heap 3.5 MiB up
	// when it first came under the bound: 8 MiB there, as before.
	var goroutines, fds int
	var heap uint64
	heapBound := uint64(1 << 20)
	if proxy.RaceEnabled {
		heapBound = 8 << 20
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		goroutines, fds, heap = resources()
		if goroutines <= baseGoroutines+2 && fds <= baseFDs+2 && heap <= baseHeap+heapBound || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("goroutines %d → %d, fds %d → %d, heap %d KiB → %d KiB", baseGoroutines, goroutines, baseFDs, fds, baseHeap>>10, heap>>10)
	require.LessOrEqual(t, goroutines, baseGoroutines+2, "goroutines left behind")
	require.LessOrEqual(t, fds, baseFDs+2, "file descriptors left open")
	require.LessOrEqual(t, heap, baseHeap+heapBound, "live heap above its start + %d MiB", heapBound>>20)
}

// soakConn runs one connection: tunnels opened one after the other, each
// echoing datagramsPerTun datagrams with window in flight, then closed.
func soakConn(env *proxyEnv, w, tunnels, datagrams, window int, timeout time.Duration, c *soakCounts, deadline time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, env.addr, &client.Config{TLSConfig: loopbackCert(nil).ClientTLS()})
	if err != nil {
		return err
	}
	c.conns.Add(1)
	defer func() {
		conn.Close()
		cs := conn.Router().Stats()
		c.clientDispatched.Add(cs.Dispatched)
		c.clientDelivered.Add(cs.Delivered)
		c.clientDropped.Add(cs.Dropped())
	}()
	buf := make([]byte, 2048)
	payload := make([]byte, 100+w)
	for range tunnels {
		if time.Now().After(deadline) {
			return nil
		}
		u, err := conn.DialUDP(ctx, env.echo.Addr().String())
		if err != nil {
			return err
		}
		c.tunnels.Add(1)
		got := 0
		for sent := 0; sent < datagrams; {
			for range min(window, datagrams-sent) {
				binary.BigEndian.PutUint32(payload, uint32(sent))
				if _, err := u.Write(payload); err != nil {
					return err
				}
				sent++
				c.sent.Add(1)
			}
			for got < sent {
				u.SetReadDeadline(time.Now().Add(timeout))
				if _, err := u.Read(buf); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						c.lost.Add(uint64(sent - got))
						got = sent
						break
					}
					return err
				}
				got++
				c.received.Add(1)
			}
		}
		u.Close()
	}
	return nil
}

// resources reports goroutines, open file descriptors and live heap after a
// garbage collection.
func resources() (goroutines, fds int, heap uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return runtime.NumGoroutine(), fds, ms.HeapAlloc
}
