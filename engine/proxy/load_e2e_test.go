package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

func TestEchoIPv6(t *testing.T) {
	es, err := echo.Listen("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	defer es.Close()
	env := startProxy(t, proxy.Config{})
	u := dialUDP(t, env.dial(t), es.Addr().String())
	for i := range 5 {
		echoOnce(t, u, []byte(fmt.Sprintf("v6 %d", i)))
	}
	require.Equal(t, "[::1]", hostOf(u.RemoteAddr().String()))
}

// 200 tunnels at once on one connection, and 200 across four connections,
// each carrying traffic.
func TestManyTunnels(t *testing.T) {
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprintf("conns=%d", conns), func(t *testing.T) {
			env := startProxy(t, proxy.Config{})
			var cs []*client.Conn
			for range conns {
				cs = append(cs, env.dial(t))
			}
			const tunnels = 200
			us := make([]*client.UDPConn, tunnels)
			var wg sync.WaitGroup
			errs := make(chan error, tunnels)
			for i := range tunnels {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					u, err := cs[i%conns].DialUDP(ctx, env.echo.Addr().String())
					if err != nil {
						errs <- err
						return
					}
					us[i] = u
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, int64(tunnels), env.proxy.Stats().Tunnels)
			for i, u := range us {
				wg.Go(func() { echoOnce(t, u, []byte(fmt.Sprintf("tunnel %d", i))) })
			}
			wg.Wait()
			for _, u := range us {
				u.Close()
			}
			waitFor(t, "tunnels closed", func() bool { return env.proxy.Stats().Tunnels == 0 })
			require.Equal(t, uint64(tunnels), env.proxy.Stats().TunnelsOpened)
		})
	}
}

// 10,000 datagrams on one tunnel, and every one accounted for at every hop:
// client → proxy router → target socket → echo → proxy → client router →
// reader. The sender keeps a bounded window in flight so that no queue that
// drops without counting (quic-go's, the kernel's) overflows; the test then
// checks the counts hop by hop.
func TestTenThousandDatagramsAccounted(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	const total, window = 10_000, 64

	received := make(map[uint32]bool, total)
	buf := make([]byte, 2048)
	payload := make([]byte, 1200)
	sent := 0
	for sent < total {
		batch := min(window, total-sent)
		for range batch {
			binary.BigEndian.PutUint32(payload, uint32(sent))
			_, err := u.Write(payload)
			require.NoError(t, err)
			sent++
		}
		// Collect this window's echoes.
		for range batch {
			u.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := u.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // lost: counted below
			}
			require.NoError(t, err)
			require.Equal(t, 1200, n)
			received[binary.BigEndian.Uint32(buf)] = true
		}
	}
	// Counters are added after each write returns; let the last settle.
	waitFor(t, "counters settle", func() bool {
		st := env.proxy.Stats()
		return st.ToClient == env.echo.Sent.Load() && st.ToTarget == env.echo.Received.Load()
	})
	st := env.proxy.Stats()
	cst := c.Router().Stats()
	t.Logf("sent %d, proxy dispatched %d, to target %d, echoed %d, to client %d, client dispatched %d, received %d",
		sent, st.Router.Dispatched, st.ToTarget, env.echo.Sent.Load(), st.ToClient, cst.Dispatched, len(received))
	// Hop 1: client → proxy router (quic-go's receive queue drops without
	// counting; with the window it must not).
	require.Equal(t, uint64(sent), st.Router.Dispatched, "client → proxy")
	// Hop 2: router → tunnel: every dispatched datagram delivered or dropped with a reason.
	require.Equal(t, st.Router.Dispatched, st.Router.Delivered+st.Router.Dropped())
	// Hop 3: tunnel → target socket.
	tunnelDrops := st.DropMalformed + st.DropUnknownContext + st.DropOversize + st.DropSendError
	require.Equal(t, st.Router.Delivered, st.ToTarget+tunnelDrops)
	// Hop 4: target socket → echo → back (the kernel on loopback).
	require.Equal(t, st.ToTarget, env.echo.Received.Load(), "proxy → echo")
	require.Equal(t, env.echo.Sent.Load(), st.ToClient+st.DropReturnOversize+st.DropReturnSendError, "echo → proxy → QUIC")
	// Hop 5: proxy → client router → reader.
	require.Equal(t, st.ToClient, cst.Dispatched, "proxy → client")
	require.Equal(t, cst.Dispatched, cst.Delivered+cst.Dropped())
	require.Equal(t, int(cst.Delivered), len(received))
	require.Equal(t, total, len(received), "every datagram came back")
}

// The largest payload that fits a QUIC datagram passes; one byte more is
// refused by the sender. On the proxy side, a payload above
// MaxDatagramPayload is dropped and counted.
func TestLargestPayload(t *testing.T) {
	env := startProxy(t, proxy.Config{MaxDatagramPayload: 65535})
	// Without path MTU discovery the limit stays put while we probe it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, env.addr, &client.Config{
		TLSConfig:  loopbackCert(t).ClientTLS(),
		QUICConfig: &quic.Config{DisablePathMTUDiscovery: true},
	})
	require.NoError(t, err)
	defer c.Close()
	u := dialUDP(t, c, env.echo.Addr().String())
	// Find the largest payload the connection takes now.
	lo, hi := 1, 4096
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, err := u.Write(make([]byte, mid)); err == nil {
			lo = mid
		} else {
			var tooLarge *quic.DatagramTooLargeError
			require.ErrorAs(t, err, &tooLarge)
			hi = mid - 1
		}
	}
	largest := lo
	t.Logf("largest UDP payload in one datagram: %d bytes", largest)
	require.GreaterOrEqual(t, largest, 1200)
	// Drain the probes' echoes, then check the largest round-trips intact.
	u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if _, err := u.Read(make([]byte, 65536)); err != nil {
			break
		}
	}
	msg := make([]byte, largest)
	for i := range msg {
		msg[i] = byte(i)
	}
	echoOnce(t, u, msg)
	_, err = u.Write(make([]byte, largest+1))
	var tooLarge *quic.DatagramTooLargeError
	require.ErrorAs(t, err, &tooLarge)

	// Proxy-side limit.
	env2 := startProxy(t, proxy.Config{MaxDatagramPayload: 1000})
	u2 := dialUDP(t, env2.dial(t), env2.echo.Addr().String())
	echoOnce(t, u2, make([]byte, 1000))
	_, err = u2.Write(make([]byte, 1001))
	require.NoError(t, err)
	waitFor(t, "oversize drop counted", func() bool { return env2.proxy.Stats().DropOversize == 1 })
}
