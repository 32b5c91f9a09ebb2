package proxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// Closed means net.ErrClosed: a client tunnel's reads and writes fail with
// an error matching it after Close, after its connection closed, and when
// the proxy shuts down under a blocked Read.
func TestClientTunnelClosedIsErrClosed(t *testing.T) {
	buf := make([]byte, 64)
	blockedRead := func(u *client.UDPConn) <-chan error {
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		ch := make(chan error, 1)
		go func() { _, err := u.Read(buf); ch <- err }()
		return ch
	}
	wantClosed := func(t *testing.T, u *client.UDPConn, read <-chan error) {
		t.Helper()
		select {
		case err := <-read:
			require.ErrorIs(t, err, net.ErrClosed, "blocked Read")
		case <-time.After(5 * time.Second):
			t.Fatal("blocked Read did not return")
		}
		_, err := u.Read(buf)
		require.ErrorIs(t, err, net.ErrClosed, "Read")
		// A write may race with the news of the end once; it then fails.
		waitFor(t, "Write to fail", func() bool { _, err := u.Write([]byte("x")); return err != nil })
		_, err = u.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed, "Write")
	}

	t.Run("Close", func(t *testing.T) {
		env := startProxy(t, proxy.Config{})
		u := dialUDP(t, env.dial(t), env.echo.Addr().String())
		echoOnce(t, u, []byte("x"))
		read := blockedRead(u)
		time.Sleep(10 * time.Millisecond) // let it block (either way the result is the same)
		require.NoError(t, u.Close())
		wantClosed(t, u, read)
	})
	t.Run("connection closed", func(t *testing.T) {
		env := startProxy(t, proxy.Config{})
		c := env.dial(t)
		u := dialUDP(t, c, env.echo.Addr().String())
		echoOnce(t, u, []byte("x"))
		read := blockedRead(u)
		require.NoError(t, c.Close())
		wantClosed(t, u, read)
	})
	t.Run("proxy shutdown", func(t *testing.T) {
		env := startProxy(t, proxy.Config{})
		u := dialUDP(t, env.dial(t), env.echo.Addr().String())
		echoOnce(t, u, []byte("x"))
		read := blockedRead(u)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, env.proxy.Shutdown(ctx), context.DeadlineExceeded) // the tunnel outlives the drain
		wantClosed(t, u, read)
	})
}
