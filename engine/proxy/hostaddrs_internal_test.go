package proxy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/policy"
)

// -allow overrides the host refusal address by address; nothing overrides
// the proxy's own listening port. Checked without a socket: the addresses
// are public ones this test only names.
func TestHostCheckAllowOverride(t *testing.T) {
	pol, err := policy.New(policy.Config{Allow: []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32")}})
	require.NoError(t, err)
	p, err := New(Config{Policy: pol, Logger: discardLogger(), HostAddrs: func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("8.8.4.4")}, nil
	}})
	require.NoError(t, err)
	require.NoError(t, p.checkHost(netip.MustParseAddrPort("8.8.8.8:53")), "named by -allow")
	require.Error(t, p.checkHost(netip.MustParseAddrPort("8.8.4.4:53")), "not named")
	require.Error(t, p.checkHost(netip.MustParseAddrPort("[::ffff:8.8.4.4]:53")), "mapped")
	*p.listenAddrs.Load() = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:4433")}
	require.Error(t, p.checkHost(netip.MustParseAddrPort("8.8.8.8:4433")), "the proxy's own port on a host address")
	require.NoError(t, p.checkHost(netip.MustParseAddrPort("9.9.9.9:4433")), "another host's port 4433")
}
