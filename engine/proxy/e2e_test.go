package proxy_test

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

func TestEchoIPv4(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	for i := range 10 {
		echoOnce(t, u, []byte(fmt.Sprintf("hello %d", i)))
	}
	waitFor(t, "counters", func() bool {
		st := env.proxy.Stats()
		return st.ToTarget >= 10 && st.ToClient >= 10
	})
	require.Equal(t, uint64(1), env.proxy.Stats().TunnelsOpened)
}

func TestEchoHostname(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.dial(t)
	u := dialUDP(t, c, net.JoinHostPort("localhost", strconv.Itoa(int(env.echo.Addr().Port()))))
	echoOnce(t, u, []byte("by name"))
}
