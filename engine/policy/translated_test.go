package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// IPv4-translated addresses (::ffff:0:a.b.c.d, RFC 2765) are refused:
// a SIIT translator would deliver them to the IPv4 address inside.
func TestIPv4TranslatedRefused(t *testing.T) {
	for _, s := range []string{"[::ffff:0:8.8.8.8]:53", "[::ffff:0:127.0.0.1]:53", "[::ffff:0:0:0]:53"} {
		require.Error(t, Default().Check(netip.MustParseAddrPort(s)), s)
	}
	require.NoError(t, Default().Check(netip.MustParseAddrPort("[::ffff:8.8.8.8]:53")), "IPv4-mapped: checked as 8.8.8.8")
}
