package ipaddr

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAddrPool(t *testing.T) {
	ap, err := NewPool(netip.MustParsePrefix("10.77.0.0/29"))
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("10.77.0.1"), ap.Own())
	var got []netip.Addr
	for {
		a, off, err := ap.Allocate()
		if err != nil {
			require.ErrorIs(t, err, ErrPoolExhausted)
			break
		}
		back, ok := ap.Offset(a)
		require.True(t, ok)
		require.Equal(t, off, back)
		got = append(got, a)
	}
	// .0 network, .1 the proxy, .7 broadcast: .2 to .6 are handed out.
	require.Len(t, got, 5)
	require.Equal(t, netip.MustParseAddr("10.77.0.2"), got[0])
	require.Equal(t, netip.MustParseAddr("10.77.0.6"), got[4])
	off, _ := ap.Offset(got[2])
	ap.Release(off)
	a, _, err := ap.Allocate()
	require.NoError(t, err)
	require.Equal(t, got[2], a, "a released address is handed out again")

	v6, err := NewPool(netip.MustParsePrefix("fd6d:7172::/64"))
	require.NoError(t, err)
	a, off, err = v6.Allocate()
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("fd6d:7172::2"), a)
	require.Equal(t, uint64(2), off)
	_, ok := v6.Offset(netip.MustParseAddr("fd6d:7173::2"))
	require.False(t, ok)

	_, err = NewPool(netip.MustParsePrefix("fd00::/48"))
	require.Error(t, err, "more than 2^64 addresses")
	_, err = NewPool(netip.MustParsePrefix("10.0.0.0/31"))
	require.Error(t, err)
}
