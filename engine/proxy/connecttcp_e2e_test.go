package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// tcpServer is a loopback TCP target; serve runs for each connection.
func tcpServer(t testing.TB, serve func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// tcpEcho echoes until the client's FIN, then closes its side.
func tcpEcho(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

func dialTCP(t testing.TB, c *client.Conn, target string) *client.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := c.DialTCP(ctx, target)
	require.NoError(t, err)
	t.Cleanup(func() { tc.Close() })
	return tc
}

// patternStream is a deterministic byte stream, the same for writer and
// checker.
type patternStream struct{ r *rand.ChaCha8 }

func newPattern() *patternStream {
	return &patternStream{r: rand.NewChaCha8([32]byte{1, 2, 3})}
}

func (p *patternStream) fill(b []byte) { p.r.Read(b) }

// tcpCarriers are the carriers CONNECT (TCP) runs on.
var tcpCarriers = []string{client.CarrierH3, client.CarrierH2}

// dialOver connects masqroute's client to env's proxy with carrier: over
// QUIC, or over TCP on a listener of its own (startTCP).
func (e *proxyEnv) dialOver(t testing.TB, carrier string) *client.Conn {
	t.Helper()
	if carrier == client.CarrierH3 {
		return e.dial(t)
	}
	return dialCarrier(t, e.startTCP(t), carrier)
}

// copyThroughTunnel writes the pattern for d through an echo tunnel over
// carrier while reading the echo back, then half-closes and reads to EOF.
// It returns the bytes sent; every byte read is checked against the
// pattern.
func copyThroughTunnel(t *testing.T, d time.Duration, carrier string) uint64 {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	target := tcpServer(t, tcpEcho)
	tc := dialTCP(t, env.dialOver(t, carrier), target)

	var sent atomic.Uint64
	writeErr := make(chan error, 1)
	go func() {
		src, buf := newPattern(), make([]byte, 64<<10)
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			src.fill(buf)
			if _, err := tc.Write(buf); err != nil {
				writeErr <- err
				return
			}
			sent.Add(uint64(len(buf)))
		}
		writeErr <- tc.CloseWrite()
	}()
	check, want, buf := newPattern(), make([]byte, 64<<10), make([]byte, 64<<10)
	var got uint64
	var pending []byte // pattern bytes not yet compared
	tc.SetReadDeadline(time.Now().Add(d + 20*time.Second))
	for {
		n, err := tc.Read(buf)
		for b := buf[:n]; len(b) > 0; {
			if len(pending) == 0 {
				check.fill(want)
				pending = want
			}
			k := min(len(b), len(pending))
			if !bytes.Equal(b[:k], pending[:k]) {
				t.Fatalf("echoed bytes differ at offset %d", got)
			}
			b, pending, got = b[k:], pending[k:], got+uint64(k)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, <-writeErr)
	require.Equal(t, sent.Load(), got, "bytes echoed == bytes sent")
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Live == 0 }, 5*time.Second, 10*time.Millisecond)
	st := env.proxy.Stats().TCP
	require.Equal(t, got, st.ToTargetBytes)
	require.Equal(t, got, st.ToClientBytes)
	require.Equal(t, uint64(1), st.ClientFIN)
	require.Equal(t, uint64(1), st.TargetFIN)
	require.Zero(t, st.Aborted)
	elapsed := d.Seconds()
	t.Logf("%s: %d MiB each way in %v: %.0f Mbit/s", carrier, got>>20, d, float64(got)*8/elapsed/1e6)
	return got
}

// TestConnectTCPCopy pushes a byte stream through a CONNECT tunnel to a TCP
// echo target as fast as it goes for 5 s (1 s with -short) over each
// carrier, and checks every byte that comes back, the counters, and the FIN
// each way.
func TestConnectTCPCopy(t *testing.T) {
	d := 5 * time.Second
	if testing.Short() {
		d = time.Second
	}
	for _, carrier := range tcpCarriers {
		t.Run(carrier, func(t *testing.T) { require.NotZero(t, copyThroughTunnel(t, d, carrier)) })
	}
}

// TestSoakTCP is TestConnectTCPCopy for 30 s per carrier; it runs under `make soak`
// (that is, when -soak is given) only.
func TestSoakTCP(t *testing.T) {
	soakSet := false
	flag.Visit(func(f *flag.Flag) { soakSet = soakSet || f.Name == "soak" })
	if !soakSet || testing.Short() {
		t.Skip("runs under make soak")
	}
	for _, carrier := range tcpCarriers {
		t.Run(carrier, func(t *testing.T) { require.NotZero(t, copyThroughTunnel(t, 30*time.Second, carrier)) })
	}
}

// clientFINFirst: the client sends and half-closes; the target reads to
// EOF, then answers and closes; the client reads the answer to EOF.
func clientFINFirst(t *testing.T, c *client.Conn) {
	target := tcpServer(t, func(tc *net.TCPConn) {
		b, err := io.ReadAll(tc) // to the client's FIN
		if err != nil {
			return
		}
		tc.Write(append([]byte("got "), b...))
		tc.CloseWrite()
	})
	tc := dialTCP(t, c, target)
	_, err := tc.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, tc.CloseWrite())
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(tc)
	require.NoError(t, err)
	require.Equal(t, "got hello", string(b))
}

// TestConnectTCPHalfClose checks both half-closes: the client's FIN
// reaches the target as EOF while the target can still answer, and the
// target's FIN reaches the client as EOF while the client can still send.
func TestConnectTCPHalfClose(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	c := env.dial(t)

	t.Run("client first", func(t *testing.T) { clientFINFirst(t, c) })

	t.Run("target first", func(t *testing.T) {
		got := make(chan string, 1)
		target := tcpServer(t, func(tc *net.TCPConn) {
			tc.Write([]byte("hi"))
			tc.CloseWrite()
			b, _ := io.ReadAll(tc)
			got <- string(b)
		})
		tc := dialTCP(t, c, target)
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(tc) // to the target's FIN
		require.NoError(t, err)
		require.Equal(t, "hi", string(b))
		_, err = tc.Write([]byte("after your FIN"))
		require.NoError(t, err)
		require.NoError(t, tc.CloseWrite())
		select {
		case s := <-got:
			require.Equal(t, "after your FIN", s)
		case <-time.After(5 * time.Second):
			t.Fatal("target did not get the client's bytes after its FIN")
		}
	})
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Live == 0 }, 5*time.Second, 10*time.Millisecond)
	st := env.proxy.Stats().TCP
	require.Equal(t, uint64(2), st.ClientFIN)
	require.Equal(t, uint64(2), st.TargetFIN)
	require.Zero(t, st.Aborted)
}

// TestConnectTCPTargetReset: a TCP RST from the target resets the stream
// (H3_CONNECT_ERROR over HTTP/3; INTERNAL_ERROR over HTTP/2, the only code
// net/http offers), so the client sees an error, not a clean EOF.
func TestConnectTCPTargetReset(t *testing.T) {
	for _, carrier := range tcpCarriers {
		t.Run(carrier, func(t *testing.T) {
			env := startProxy(t, proxy.Config{ConnectTCP: true})
			target := tcpServer(t, func(tc *net.TCPConn) {
				b := make([]byte, 1)
				tc.Read(b)
				tc.SetLinger(0) // Close sends RST
			})
			tc := dialTCP(t, env.dialOver(t, carrier), target)
			_, err := tc.Write([]byte("x"))
			require.NoError(t, err)
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(tc)
			require.Error(t, err)
			require.NotErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
			if carrier == client.CarrierH3 {
				var se *quic.StreamError
				require.ErrorAs(t, err, &se)
				require.Equal(t, quic.StreamErrorCode(0x10f), se.ErrorCode) // H3_CONNECT_ERROR
			}
			require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Aborted == 1 }, 5*time.Second, 10*time.Millisecond)
		})
	}
}

// TestConnectTCPInTunnels: a CONNECT (TCP) tunnel is listed by Tunnels
// with its target and byte counts while open, over each carrier, and
// reaches Hooks.TunnelEnded when it ends: "closed" after a FIN each way,
// "aborted" after the target's reset.
func TestConnectTCPInTunnels(t *testing.T) {
	for _, carrier := range tcpCarriers {
		t.Run(carrier, func(t *testing.T) {
			ended := make(chan proxy.TunnelInfo, 2)
			env := startProxy(t, proxy.Config{ConnectTCP: true, Hooks: proxy.Hooks{
				TunnelEnded: func(ti proxy.TunnelInfo) { ended <- ti },
			}})
			c := env.dialOver(t, carrier)
			target := tcpServer(t, tcpEcho)
			tc := dialTCP(t, c, target)
			_, err := tc.Write([]byte("hello"))
			require.NoError(t, err)
			b := make([]byte, 5)
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadFull(tc, b)
			require.NoError(t, err)
			var live []proxy.TunnelInfo
			require.Eventually(t, func() bool { // a count moves after the write that carried its bytes: the echo can be first
				live = env.proxy.Tunnels()
				return len(live) == 1 && live[0].ToTargetBytes == 5 && live[0].ToClientBytes == 5
			}, 5*time.Second, time.Millisecond, "live: %+v", live)
			require.Equal(t, proxy.KindConnectTCP, live[0].Kind)
			require.Equal(t, target, live[0].Target)
			require.NotEmpty(t, live[0].Client)
			require.Zero(t, live[0].ToTarget, "bytes, not datagrams")
			require.Empty(t, live[0].CloseReason)

			require.NoError(t, tc.CloseWrite())
			_, err = io.ReadAll(tc) // to the target's FIN
			require.NoError(t, err)
			select {
			case ti := <-ended:
				require.Equal(t, "closed", ti.CloseReason)
				require.Equal(t, proxy.KindConnectTCP, ti.Kind)
				require.Equal(t, uint64(5), ti.ToTargetBytes)
				require.Equal(t, uint64(5), ti.ToClientBytes)
				require.Positive(t, ti.Duration)
			case <-time.After(5 * time.Second):
				t.Fatal("TunnelEnded not called")
			}
			require.Empty(t, env.proxy.Tunnels())

			reset := tcpServer(t, func(tc *net.TCPConn) {
				tc.Read(make([]byte, 1))
				tc.SetLinger(0) // Close sends RST
			})
			tc = dialTCP(t, c, reset)
			_, err = tc.Write([]byte("x"))
			require.NoError(t, err)
			select {
			case ti := <-ended:
				require.Equal(t, "aborted", ti.CloseReason)
				require.Equal(t, reset, ti.Target)
			case <-time.After(5 * time.Second):
				t.Fatal("TunnelEnded not called for the reset tunnel")
			}
		})
	}
}

// TestConnectTCPSlowReader: a client that reads nothing while the target
// sends as fast as it can. The proxy must stop reading the target once flow
// control stops it (the target's writes stall), and hold no more than its
// copy buffer: what it sent the client stays within the client's stream
// window, and the heap does not grow with the target's output.
func TestConnectTCPSlowReader(t *testing.T) {
	for _, tc := range []struct {
		carrier string
		window  uint64 // the client's largest stream receive window
	}{
		{client.CarrierH3, 6 << 20}, // quic-go's default MaxStreamReceiveWindow
		{client.CarrierH2, 4 << 20}, // golang.org/x/net/http2's client stream window
	} {
		t.Run(tc.carrier, func(t *testing.T) { slowTCPReader(t, tc.carrier, tc.window) })
	}
}

func slowTCPReader(t *testing.T, carrier string, window uint64) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	var written atomic.Int64
	stop := make(chan struct{})
	target := tcpServer(t, func(tc *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := tc.Write(buf)
			written.Add(int64(n))
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				return
			}
		}
	})
	defer close(stop)
	c := env.dialOver(t, carrier)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	tc := dialTCP(t, c, target)
	_, err := tc.Write([]byte("go")) // the tunnel is up; now read nothing
	require.NoError(t, err)

	// Wait for the target to stall: no progress for 500 ms.
	deadline := time.Now().Add(10 * time.Second)
	last := int64(-1)
	for {
		time.Sleep(500 * time.Millisecond)
		n := written.Load()
		if n == last && n > 0 {
			break
		}
		last = n
		require.True(t, time.Now().Before(deadline), "target never stalled: %d bytes written", n)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := env.proxy.Stats().TCP
	t.Logf("%s: target wrote %d KiB before stalling; proxy sent the client %d KiB; heap grew %d KiB",
		carrier, last>>10, st.ToClientBytes>>10, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
	// The client's stream window, plus one copy buffer.
	require.LessOrEqual(t, st.ToClientBytes, window+64<<10)
	// Kernel buffers on loopback (tcp_rmem up to 32 MiB) take the rest of
	// what the target wrote; the proxy's heap took none of it.
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(24<<20))
	require.Less(t, last, int64(64<<20))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestConnectTCPRefusals: the policy, the switch, the tunnel limit and
// Authorize apply to CONNECT as to CONNECT-UDP.
func TestConnectTCPRefusals(t *testing.T) {
	target := tcpServer(t, tcpEcho)
	dial := func(t *testing.T, cfg proxy.Config, target string) error {
		env := startProxy(t, cfg)
		c := env.dial(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tc, err := c.DialTCP(ctx, target)
		if err == nil {
			tc.Close()
		}
		return err
	}
	status := func(t *testing.T, err error) int {
		var pe *client.ProxyError
		require.ErrorAs(t, err, &pe)
		return pe.Status
	}
	t.Run("disabled", func(t *testing.T) {
		require.Equal(t, http.StatusNotImplemented, status(t, dial(t, proxy.Config{}, target)))
	})
	t.Run("policy", func(t *testing.T) {
		// Private addresses stay refused by the tests' policy.
		require.Equal(t, http.StatusForbidden, status(t, dial(t, proxy.Config{ConnectTCP: true}, "10.1.2.3:80")))
	})
	t.Run("bad authority", func(t *testing.T) {
		require.Equal(t, http.StatusBadRequest, status(t, dial(t, proxy.Config{ConnectTCP: true}, "127.0.0.1:0")))
	})
	t.Run("authorize", func(t *testing.T) {
		cfg := proxy.Config{ConnectTCP: true, Authorize: func(*http.Request) error { return errors.New("no") }}
		require.Equal(t, http.StatusForbidden, status(t, dial(t, cfg, target)))
	})
	t.Run("refused target", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closed := ln.Addr().String()
		ln.Close()
		require.Equal(t, http.StatusBadGateway, status(t, dial(t, proxy.Config{ConnectTCP: true}, closed)))
	})
	t.Run("tunnel limit", func(t *testing.T) {
		env := startProxy(t, proxy.Config{ConnectTCP: true, MaxTunnelsPerConn: 1})
		c := env.dial(t)
		dialTCP(t, c, target)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.DialTCP(ctx, target)
		require.Equal(t, http.StatusServiceUnavailable, status(t, err))
		// A UDP tunnel counts against the same limit.
		_, err = c.DialUDP(ctx, env.echo.Addr().String())
		require.Equal(t, http.StatusServiceUnavailable, status(t, err))
	})
}

// TestConnectTCPEndsWithProxy: closing the proxy ends an open TCP tunnel
// whose both ends are idle: the target's connection is closed and the
// client's read fails.
func TestConnectTCPEndsWithProxy(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	targetDone := make(chan error, 1)
	target := tcpServer(t, func(tc *net.TCPConn) {
		_, err := io.ReadAll(tc)
		targetDone <- err
	})
	tc := dialTCP(t, env.dial(t), target)
	_, err := tc.Write([]byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.ToTargetBytes == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, env.proxy.Close())
	select {
	case <-targetDone: // EOF or a reset: the proxy's side is gone
	case <-time.After(5 * time.Second):
		t.Fatal("target connection still open after the proxy closed")
	}
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(tc)
	require.Error(t, err)
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Live == 0 }, 5*time.Second, 5*time.Millisecond)
}
