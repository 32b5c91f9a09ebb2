package policy

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// checkReason returns "" when p allows target, else the refusal's reason.
func checkReason(t *testing.T, p *Policy, target string) string {
	t.Helper()
	err := p.Check(ap(target))
	if err == nil {
		return ""
	}
	var r *Refusal
	require.True(t, errors.As(err, &r), "%v is not a *Refusal", err)
	require.Equal(t, ap(target), r.Addr)
	return r.Reason
}

func TestDefault(t *testing.T) {
	cases := []struct{ target, reason string }{
		// IPv4 ranges, inside and at both edges.
		{"0.0.0.0:80", "unspecified"},
		{"0.0.0.1:80", "this network"},
		{"0.255.255.255:80", "this network"},
		{"1.0.0.0:80", ""},
		{"9.255.255.255:80", ""},
		{"10.0.0.0:80", "private"},
		{"10.255.255.255:80", "private"},
		{"11.0.0.0:80", ""},
		{"100.63.255.255:80", ""},
		{"100.64.0.0:80", "shared address space (CGNAT)"},
		{"100.127.255.255:80", "shared address space (CGNAT)"},
		{"100.128.0.0:80", ""},
		{"126.255.255.255:80", ""},
		{"127.0.0.1:80", "loopback"},
		{"127.255.255.255:80", "loopback"},
		{"128.0.0.0:80", ""},
		{"169.253.255.255:80", ""},
		{"169.254.0.0:80", "link-local"},
		{"169.254.169.254:80", "link-local"},
		{"169.254.255.255:80", "link-local"},
		{"169.255.0.0:80", ""},
		{"172.15.255.255:80", ""},
		{"172.16.0.0:80", "private"},
		{"172.31.255.255:80", "private"},
		{"172.32.0.0:80", ""},
		{"191.255.255.255:80", ""},
		{"192.0.0.0:80", "IETF protocol assignment"},
		{"192.0.0.255:80", "IETF protocol assignment"},
		{"192.0.1.0:80", ""},
		{"192.0.2.7:80", ""}, // documentation ranges are not refused
		{"192.167.255.255:80", ""},
		{"192.168.0.0:80", "private"},
		{"192.168.255.255:80", "private"},
		{"192.169.0.0:80", ""},
		{"198.17.255.255:80", ""},
		{"198.18.0.0:80", "benchmarking"},
		{"198.19.255.255:80", "benchmarking"},
		{"198.20.0.0:80", ""},
		{"223.255.255.255:80", ""},
		{"224.0.0.0:80", "multicast"},
		{"239.255.255.255:80", "multicast"},
		{"240.0.0.0:80", "reserved"},
		{"255.255.255.254:80", "reserved"},
		{"255.255.255.255:80", "broadcast"},
		{"8.8.8.8:53", ""},
		// IPv6.
		{"[::]:80", "unspecified"},
		{"[::1]:80", "loopback"},
		{"[::2]:80", "IPv4-compatible (deprecated)"},
		{"[::127.0.0.1]:80", "IPv4-compatible (deprecated)"},
		{"[::8.8.8.8]:80", "IPv4-compatible (deprecated)"},
		{"[::ffff:ffff]:80", "IPv4-compatible (deprecated)"},
		{"[::1:0:0]:80", ""},
		{"[fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", ""},
		{"[fe80::]:80", "link-local"},
		{"[fe80::1%eth0]:80", "link-local"},
		{"[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", "link-local"},
		{"[fec0::1]:80", "site-local (deprecated)"},
		{"[feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", "site-local (deprecated)"},
		{"[fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", ""},
		{"[fc00::]:80", "private"},
		{"[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", "private"},
		{"[ff00::]:80", "multicast"},
		{"[ff02::1]:80", "multicast"},
		{"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80", "multicast"},
		{"[2001::]:80", "Teredo"},
		{"[2001:0:ffff:ffff:ffff:ffff:ffff:ffff]:80", "Teredo"},
		{"[2001:1::1]:80", ""},
		{"[2001:1:ffff:ffff:ffff:ffff:ffff:ffff]:80", ""},
		{"[2001:2::]:80", "benchmarking"},
		{"[2001:2:0:ffff:ffff:ffff:ffff:ffff]:80", "benchmarking"},
		{"[2001:2:1::]:80", ""},
		{"[2001:db8::1]:80", ""},
		{"[2606:4700:4700::1111]:443", ""},
		// IPv4-mapped: the IPv4 address decides, and the refusal keeps the
		// address as given.
		{"[::ffff:127.0.0.1]:80", "loopback"},
		{"[::ffff:10.1.2.3]:80", "private"},
		{"[::ffff:169.254.169.254]:80", "link-local"},
		{"[::ffff:0.0.0.0]:80", "unspecified"},
		{"[::ffff:8.8.8.8]:80", ""},
		// NAT64 well-known prefix: the embedded IPv4 address decides.
		{"[64:ff9b::127.0.0.1]:80", "loopback (IPv4 127.0.0.1 in NAT64 64:ff9b::/96)"},
		{"[64:ff9b::10.0.0.1]:80", "private (IPv4 10.0.0.1 in NAT64 64:ff9b::/96)"},
		{"[64:ff9b::169.254.169.254]:80", "link-local (IPv4 169.254.169.254 in NAT64 64:ff9b::/96)"},
		{"[64:ff9b::8.8.8.8]:80", ""},
		{"[64:ff9b::1:0:8.8.8.8]:80", ""}, // outside the /96: not NAT64
		{"[64:ff9b:1::1]:80", "local-use NAT64"},
		{"[64:ff9b:1:ffff:ffff:ffff:ffff:ffff]:80", "local-use NAT64"},
		{"[64:ff9b:2::1]:80", ""},
		// 6to4: IPv4 in bits 16-47.
		{"[2002:7f00:1::]:80", "loopback (IPv4 127.0.0.1 in 6to4 2002::/16)"},
		{"[2002:c0a8:101::1]:80", "private (IPv4 192.168.1.1 in 6to4 2002::/16)"},
		{"[2002:a9fe:a9fe:1:2:3:4:5]:80", "link-local (IPv4 169.254.169.254 in 6to4 2002::/16)"},
		{"[2002:0808:0808::1]:80", ""},
		{"[2003::1]:80", ""},
		// Port 0, any address.
		{"8.8.8.8:0", "port 0"},
		{"[2606:4700:4700::1111]:0", "port 0"},
	}
	for _, p := range []*Policy{Default(), {}, nil} {
		for _, c := range cases {
			require.Equal(t, c.reason, checkReason(t, p, c.target), c.target)
		}
	}
	require.Equal(t, "invalid address", checkReason2(Default(), netip.AddrPort{}))
}

func checkReason2(p *Policy, target netip.AddrPort) string {
	var r *Refusal
	if errors.As(p.Check(target), &r) {
		return r.Reason
	}
	return ""
}

func TestAllowDeny(t *testing.T) {
	p, err := New(Config{
		Allow: mustPrefixes("127.0.0.1, 10.1.0.0/16, fe80::1, 169.254.169.0/24, 10.1.2.0/24, ::ffff:192.168.7.0/120"),
		Deny:  mustPrefixes("10.1.2.0/24, 8.8.4.4, 2606:4700::/32, 169.254.169.254"),
	})
	require.NoError(t, err)
	for target, reason := range map[string]string{
		// Allow opens exactly what it names.
		"127.0.0.1:80":            "",
		"[::ffff:127.0.0.1]:80":   "",
		"127.0.0.2:80":            "loopback",
		"10.1.255.255:80":         "",
		"10.2.0.0:80":             "private",
		"[fe80::1]:80":            "",
		"[fe80::1%eth0]:80":       "",
		"[fe80::2]:80":            "link-local",
		"169.254.169.1:80":        "",
		"192.168.7.1:80":          "", // a mapped Allow prefix is its IPv4 prefix
		"192.168.8.1:80":          "private",
		"[64:ff9b::127.0.0.1]:80": "loopback (IPv4 127.0.0.1 in NAT64 64:ff9b::/96)",
		"[2002:7f00:1::]:80":      "loopback (IPv4 127.0.0.1 in 6to4 2002::/16)",
		// Deny beats Allow, and refuses public addresses.
		"10.1.2.3:80":                "denied by rule 10.1.2.0/24",
		"169.254.169.254:80":         "denied by rule 169.254.169.254/32",
		"8.8.4.4:53":                 "denied by rule 8.8.4.4/32",
		"8.8.8.8:53":                 "",
		"[::ffff:8.8.4.4]:53":        "denied by rule 8.8.4.4/32",
		"[64:ff9b::8.8.4.4]:53":      "denied by rule 8.8.4.4/32",
		"[2002:808:404::1]:53":       "denied by rule 8.8.4.4/32",
		"[2606:4700:4700::1111]:443": "denied by rule 2606:4700::/32",
		"1.1.1.1:0":                  "port 0",
	} {
		require.Equal(t, reason, checkReason(t, p, target), target)
	}
	var r *Refusal
	require.ErrorAs(t, p.Check(ap("10.1.2.3:80")), &r)
	require.Equal(t, "10.1.2.0/24", r.Rule)
	require.Equal(t, "policy: target 10.1.2.3:80 refused: denied by rule 10.1.2.0/24", r.Error())
	require.ErrorAs(t, p.Check(ap("127.0.0.2:80")), &r)
	require.Equal(t, "127.0.0.0/8", r.Rule)
}

func TestAllowPortZero(t *testing.T) {
	p, err := New(Config{Allow: mustPrefixes("0.0.0.0/0, ::/0"), AllowPorts: []PortRange{{0, 65535}}})
	require.NoError(t, err)
	require.Equal(t, "", checkReason(t, p, "127.0.0.1:1"))
	require.Equal(t, "port 0", checkReason(t, p, "127.0.0.1:0"))
}

func TestPorts(t *testing.T) {
	p, err := New(Config{
		AllowPorts: mustPorts("53, 443, 8000-9000"),
		DenyPorts:  mustPorts("8080, 8443-8444"),
		Allow:      mustPrefixes("127.0.0.1"),
	})
	require.NoError(t, err)
	for target, reason := range map[string]string{
		"8.8.8.8:53":      "",
		"8.8.8.8:443":     "",
		"8.8.8.8:8000":    "",
		"8.8.8.8:9000":    "",
		"8.8.8.8:7999":    "port not allowed",
		"8.8.8.8:9001":    "port not allowed",
		"8.8.8.8:80":      "port not allowed",
		"8.8.8.8:8080":    "port denied",
		"8.8.8.8:8443":    "port denied",
		"8.8.8.8:8444":    "port denied",
		"8.8.8.8:8445":    "",
		"127.0.0.1:53":    "",
		"127.0.0.1:80":    "port not allowed", // Allow opens addresses, not ports
		"10.0.0.1:53":     "private",
		"10.0.0.1:80":     "port not allowed", // ports are checked first
		"8.8.8.8:0":       "port 0",
		"[2001:db8::1]:1": "port not allowed",
	} {
		require.Equal(t, reason, checkReason(t, p, target), target)
	}
	var r *Refusal
	require.ErrorAs(t, p.Check(ap("8.8.8.8:8443")), &r)
	require.Equal(t, "8443-8444", r.Rule)

	p, err = New(Config{DenyPorts: mustPorts("25")})
	require.NoError(t, err)
	require.Equal(t, "port denied", checkReason(t, p, "8.8.8.8:25"))
	require.Equal(t, "", checkReason(t, p, "8.8.8.8:26"))
}

func TestNewErrors(t *testing.T) {
	for _, c := range []Config{
		{Allow: []netip.Prefix{{}}},
		{Deny: []netip.Prefix{{}}},
		{AllowPorts: []PortRange{{10, 9}}},
		{DenyPorts: []PortRange{{2, 1}}},
	} {
		_, err := New(c)
		require.Error(t, err, "%+v", c)
	}
	// New copies and masks.
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.9/8")}
	p, err := New(Config{Allow: allow})
	require.NoError(t, err)
	allow[0] = netip.MustParsePrefix("8.8.8.8/32")
	require.Equal(t, "", checkReason(t, p, "127.1.2.3:80"))
}

func TestCheckAllocs(t *testing.T) {
	p, err := New(Config{
		Allow:      mustPrefixes("127.0.0.1"),
		Deny:       mustPrefixes("10.1.2.0/24, 2606:4700::/32"),
		AllowPorts: mustPorts("1-1023, 8000-9000"),
		DenyPorts:  mustPorts("25"),
	})
	require.NoError(t, err)
	for _, target := range []string{"8.8.8.8:443", "[2001:db8::1]:443", "127.0.0.1:53", "[64:ff9b::8.8.8.8]:53", "[::ffff:1.1.1.1]:53"} {
		a := ap(target)
		require.NoError(t, p.Check(a))
		require.Zero(t, testing.AllocsPerRun(100, func() { _ = p.Check(a) }), target)
		if Default().Check(a) == nil {
			require.Zero(t, testing.AllocsPerRun(100, func() { _ = Default().Check(a) }), target)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	p, err := New(Config{Deny: mustPrefixes("10.1.2.0/24, 2606:4700::/32"), DenyPorts: mustPorts("25")})
	require.NoError(b, err)
	for _, target := range []string{"8.8.8.8:443", "[2001:db8::1]:443", "[2002:808:808::1]:443"} {
		a := ap(target)
		b.Run(target, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.Check(a) != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}

func mustPrefixes(s string) []netip.Prefix {
	p, err := ParsePrefixes(s)
	if err != nil {
		panic(err)
	}
	return p
}

func mustPorts(s string) []PortRange {
	p, err := ParsePorts(s)
	if err != nil {
		panic(err)
	}
	return p
}
