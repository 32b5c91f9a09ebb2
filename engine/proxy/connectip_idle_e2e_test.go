package proxy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/packetio"
	"github.com/masqroute/masqroute/engine/proxy"
)

// An idle CONNECT-IP tunnel ends after the idle timeout and gives its
// addresses back, as a CONNECT-UDP one does: an idle client cannot keep
// the pool empty for everyone else.
func TestConnectIPIdleTimeout(t *testing.T) {
	captureClientLog(t)
	ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
	require.NoError(t, err)
	const idle = 200 * time.Millisecond
	env := &ipEnv{proxyEnv: startProxy(t, proxy.Config{IdleTimeout: idle, IP: &proxy.IPConfig{
		Device:    ns,
		Templates: []string{proxy.DefaultIPTemplate, "https://{authority}/vpn"},
	}}), ns: ns}
	start := time.Now()
	env.dialIP(t)
	require.Equal(t, 2, env.proxy.Stats().IPAddressesInUse)
	waitFor(t, "idle tunnel closed", func() bool {
		st := env.proxy.Stats()
		return st.Tunnels == 0 && st.IPAddressesInUse == 0 && st.IdleClosed == 1
	})
	require.GreaterOrEqual(t, time.Since(start), idle, "not before the idle timeout")
}
