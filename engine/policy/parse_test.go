package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes("10.0.0.0/8, ::1/128, 192.0.2.7,2001:db8::1 ,::ffff:10.0.0.0/104")
	require.NoError(t, err)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("::ffff:10.0.0.0/104"),
	}
	require.Equal(t, want, got)
	for _, empty := range []string{"", "  "} {
		got, err := ParsePrefixes(empty)
		require.NoError(t, err)
		require.Empty(t, got)
	}
	for _, bad := range []string{
		"10.0.0.0/33", "10.1.2.3/8", "10.0.0.0/-1", "10.0.0.0/", "/8", "10.0.0", "example.com",
		"fe80::1%eth0", "fe80::1%eth0/128", "10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,::1",
		"10.0.0.0/8 ::1", "::/129", "010.0.0.1",
	} {
		_, err := ParsePrefixes(bad)
		require.Error(t, err, "%q", bad)
	}
}

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("53, 443, 8000-9000,0-1023, 65535, 7 - 8")
	require.NoError(t, err)
	require.Equal(t, []PortRange{{53, 53}, {443, 443}, {8000, 9000}, {0, 1023}, {65535, 65535}, {7, 8}}, got)
	require.Equal(t, "8000-9000", got[2].String())
	require.Equal(t, "53", got[0].String())
	got, err = ParsePorts("")
	require.NoError(t, err)
	require.Empty(t, got)
	for _, bad := range []string{
		"65536", "-1", "+1", "1-", "-", "9000-8000", "1-2-3", "a", "0x10", "1,,2", "1,", "1 2", "100000", "1.5",
	} {
		_, err := ParsePorts(bad)
		require.Error(t, err, "%q", bad)
	}
}
