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
