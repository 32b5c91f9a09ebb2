package proxy_test

import (
	"bytes"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// Empty and oversize DATAGRAM capsules are dropped and counted before they
// are copied: neither reaches the router or takes a place in a ring.
func TestCapsuleSizeCheckedBeforeCopy(t *testing.T) {
	env := startProxy(t, proxy.Config{MaxDatagramPayload: 100})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
	var b []byte
	b = append(b, 0x00, 0x00) // DATAGRAM, empty: not even a context ID
	big := append([]byte{0}, bytes.Repeat([]byte{'x'}, 32<<10)...)
	b = quicvarint.Append(append(b, 0x00), uint64(len(big)))
	b = append(b, big...)
	ok := append([]byte{0}, "fits"...)
	b = append(append(b, 0x00, byte(len(ok))), ok...)
	_, err := str.Write(b)
	require.NoError(t, err)
	waitFor(t, "capsules counted", func() bool { return env.proxy.Stats().CapsuleDatagrams == 3 })
	waitFor(t, "the one that fits arrives", func() bool { return env.proxy.Stats().ToTarget == 1 })
	st := env.proxy.Stats()
	require.Equal(t, uint64(1), st.Router.Dispatched, "only the capsule that fits was copied and dispatched")
	require.Equal(t, uint64(1), st.DropMalformed)
	require.Equal(t, uint64(1), st.DropOversize)
}
