package template

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePort(t *testing.T) {
	for port, want := range map[string]uint16{"1": 1, "53": 53, "443": 443, "65535": 65535} {
		tg, err := ParseHostPort("example.com", port)
		require.NoError(t, err, port)
		require.Equal(t, want, tg.Port)
	}
	for _, port := range []string{"", "0", "00", "0443", "65536", "99999", "100000", "-1", "+443",
		" 443", "443 ", "4a3", "0x1bb", "443.0", "１２３", "%34%34%33", "443/", "\x00"} {
		_, err := ParseHostPort("example.com", port)
		require.ErrorIs(t, err, ErrBadPort, "%q", port)
	}
	// A bad port wins over a bad host: both are 400 anyway.
	_, err := ParseHostPort("", "0")
	require.ErrorIs(t, err, ErrBadPort)
}

func TestParseHost(t *testing.T) {
	ip := netip.MustParseAddr
	good := []struct {
		host string
		addr netip.Addr
		name string
	}{
		{"192.0.2.1", ip("192.0.2.1"), ""},
		{"192.0.2.1.", ip("192.0.2.1"), ""},
		{"2001:db8::1", ip("2001:db8::1"), ""},
		{"[2001:db8::1]", ip("2001:db8::1"), ""},
		{"::ffff:127.0.0.1", ip("::ffff:127.0.0.1"), ""},
		{"::1", ip("::1"), ""},
		// Legacy IPv4 spellings.
		{"2130706433", ip("127.0.0.1"), ""},
		{"0x7f000001", ip("127.0.0.1"), ""},
		{"0X7F000001", ip("127.0.0.1"), ""},
		{"017700000001", ip("127.0.0.1"), ""},
		{"0177.0.0.1", ip("127.0.0.1"), ""},
		{"0x7f.0.0.1", ip("127.0.0.1"), ""},
		{"0x7f.0x0.0x0.0x1", ip("127.0.0.1"), ""},
		{"127.1", ip("127.0.0.1"), ""},
		{"127.0.1", ip("127.0.0.1"), ""},
		{"0x7f.1", ip("127.0.0.1"), ""},
		{"0177.1", ip("127.0.0.1"), ""},
		{"127.0x1", ip("127.0.0.1"), ""},
		{"10.0x10203", ip("10.1.2.3"), ""},
		{"169.254.43518", ip("169.254.169.254"), ""},
		{"0xa9fea9fe", ip("169.254.169.254"), ""},
		{"0", ip("0.0.0.0"), ""},
		{"0x", ip("0.0.0.0"), ""},
		{"0x.0x.0x.0x", ip("0.0.0.0"), ""},
		{"00000000000000000000000001", ip("0.0.0.1"), ""},
		{"0x00000000000000000000000001", ip("0.0.0.1"), ""},
		{"4294967295", ip("255.255.255.255"), ""},
		{"1.2.3.4.", ip("1.2.3.4"), ""},
		// Names.
		{"example.com", netip.Addr{}, "example.com"},
		{"Example.COM.", netip.Addr{}, "example.com."},
		{"localhost", netip.Addr{}, "localhost"},
		{"a", netip.Addr{}, "a"},
		{"xn--bcher-kva.example", netip.Addr{}, "xn--bcher-kva.example"},
		{"1.2.3.4.example", netip.Addr{}, "1.2.3.4.example"},
		{"123.example", netip.Addr{}, "123.example"},
		{"0xdead.beef", netip.Addr{}, "0xdead.beef"},
		{"example.0xg", netip.Addr{}, "example.0xg"},
		{"1e3", netip.Addr{}, "1e3"},
		{"0x1g", netip.Addr{}, "0x1g"},
		{"a-b.c-d", netip.Addr{}, "a-b.c-d"},
		{strings.Repeat("a", 63) + ".b", netip.Addr{}, strings.Repeat("a", 63) + ".b"},
		{name253(), netip.Addr{}, name253()},
		{name253() + ".", netip.Addr{}, name253() + "."},
	}
	for _, c := range good {
		tg, err := ParseHostPort(c.host, "443")
		require.NoError(t, err, c.host)
		require.Equal(t, Target{Addr: c.addr, Name: c.name, Port: 443}, tg, c.host)
	}
	bad := []string{
		"", ".", "..", "a..b", ".a", "a.b..",
		"fe80::1%eth0", "fe80::1%25eth0", "[fe80::1%eth0]",
		"[::1", "::1]", "[192.0.2.1]", "[example.com]", "[]", ":::", "1:2:3:4:5:6:7:8:9", "2001:db8::g",
		"256.0.0.1", "1.2.3.256", "1.256.3", "1.2.65536", "1.16777216", "4294967296", "0x100000000",
		"1.2.3.4.5", "1.2.3.4.5.", "1..2.3", "08", "0.09", "1.2.3.08",
		"example.123", "foo.0x1", "a.b.0x", "example.com.0", "example.-1",
		"-a.example", "a-.example", "a_b.example", "a b", "a/b", "../../admin", "a:b.example",
		"exa mple.com", "é.example", "a%2eb", "a\x00b",
		strings.Repeat("a", 64) + ".example", name253() + "a", name253() + "..",
	}
	for _, host := range bad {
		_, err := ParseHostPort(host, "443")
		require.ErrorIs(t, err, ErrBadHost, "%q", host)
	}
}

// name253 is a DNS name of exactly 253 characters.
func name253() string {
	l := strings.Repeat("a", 62)
	return l + "." + l + "." + l + "." + l + ".b" // 4*63 + 1
}

func TestTargetString(t *testing.T) {
	for host, want := range map[string]string{
		"2001:db8::1": "[2001:db8::1]:443",
		"0x7f.1":      "127.0.0.1:443",
		"Example.com": "example.com:443",
	} {
		tg, err := ParseHostPort(host, "443")
		require.NoError(t, err)
		require.Equal(t, want, tg.String())
	}
}
