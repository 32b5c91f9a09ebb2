package engine_test

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
)

func TestEchoIPv4(t *testing.T) {
	env := startProxy(t, engine.ProxyConfig{})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	for i := range 10 {
		echoOnce(t, u, []byte(fmt.Sprintf("hello %d", i)))
	}
	st := env.proxy.Stats()
	require.GreaterOrEqual(t, st.ToTarget, uint64(10))
	require.GreaterOrEqual(t, st.ToClient, uint64(10))
	require.Equal(t, uint64(1), st.TunnelsOpened)
}

func TestEchoHostname(t *testing.T) {
	env := startProxy(t, engine.ProxyConfig{})
	c := env.dial(t)
	u := dialUDP(t, c, net.JoinHostPort("localhost", strconv.Itoa(int(env.echo.Addr().Port()))))
	echoOnce(t, u, []byte("by name"))
}
