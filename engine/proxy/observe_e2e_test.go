package proxy_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// TestHooksAndTunnels checks what operators see of a tunnel: it is listed
// by Tunnels while open, TunnelSetup and TunnelEnded are called with its
// counts, and a refusal reaches Refused with its status and reason.
func TestHooksAndTunnels(t *testing.T) {
	var (
		mu      sync.Mutex
		ended   []proxy.TunnelInfo
		refused []proxy.Refusal
		setups  []string
	)
	env := startProxy(t, proxy.Config{Hooks: proxy.Hooks{
		TunnelEnded: func(ti proxy.TunnelInfo) { mu.Lock(); ended = append(ended, ti); mu.Unlock() },
		Refused:     func(r proxy.Refusal) { mu.Lock(); refused = append(refused, r); mu.Unlock() },
		TunnelSetup: func(kind string, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil && d > 0 {
				setups = append(setups, kind)
			}
		},
	}})
	c := env.dial(t)
	u := dialUDP(t, c, env.echo.Addr().String())
	for range 3 {
		echoOnce(t, u, []byte("hello"))
	}
	// The worker counts a batch after it is written, which can be after
	// its echo reached the client.
	var live []proxy.TunnelInfo
	require.Eventually(t, func() bool {
		live = env.proxy.Tunnels()
		return len(live) == 1 && live[0].ToTarget >= 3
	}, 5*time.Second, time.Millisecond)
	require.Len(t, live, 1)
	require.Equal(t, "connect-udp", live[0].Kind)
	require.Equal(t, env.echo.Addr().String(), live[0].Target)
	require.NotEmpty(t, live[0].Client)
	require.GreaterOrEqual(t, live[0].ToTarget, uint64(3))
	require.Empty(t, live[0].CloseReason)

	u.Close()
	waitFor(t, "tunnel end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) == 1
	})
	require.Empty(t, env.proxy.Tunnels())
	mu.Lock()
	ti := ended[0]
	require.Equal(t, []string{"connect-udp"}, setups)
	mu.Unlock()
	require.Equal(t, "connect-udp", ti.Kind)
	require.GreaterOrEqual(t, ti.ToTarget, uint64(3))
	require.Equal(t, uint64(5)*ti.ToTarget, ti.ToTargetBytes)
	require.Positive(t, ti.Duration)
	require.NotEmpty(t, ti.CloseReason)

	// A target the policy refuses: the unspecified address.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.DialUDP(ctx, "0.0.0.0:53")
	require.Error(t, err)
	waitFor(t, "refusal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(refused) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, http.StatusForbidden, refused[0].Status)
	require.NotEmpty(t, refused[0].Reason)
	require.NotEmpty(t, refused[0].Client)
	require.Equal(t, "connect-udp", refused[0].Kind)
}
