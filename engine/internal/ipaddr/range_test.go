package ipaddr

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMergeRanges(t *testing.T) {
	a := netip.MustParseAddr
	got := Merge([]Range{{a("10.0.0.5"), a("10.0.0.9")}, {a("10.0.0.0"), a("10.0.0.4")}, {a("10.0.0.8"), a("10.0.1.0")}, {a("::1"), a("::2")}})
	require.Equal(t, []Range{{a("10.0.0.0"), a("10.0.1.0")}, {a("::1"), a("::2")}}, got)
}

func TestSubtract(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	require.Equal(t, pfx("192.0.2.0/25", "2001:db8::/33"),
		Subtract(pfx("192.0.2.0/24", "2001:db8::/32"), pfx("192.0.2.128/25", "2001:db8:8000::/33")))
	require.Equal(t, pfx("10.0.0.0/8"), Subtract(pfx("10.0.0.0/8"), nil))
	require.Empty(t, Subtract(pfx("192.0.2.0/24"), pfx("192.0.0.0/16")))
}
