package template

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	udpPath  = "https://proxy.example:4433/.well-known/masque/udp/{target_host}/{target_port}/"
	udpAny   = "https://{authority}/.well-known/masque/udp/{target_host}/{target_port}/"
	udpQuery = "https://proxy.example/masque{?target_host,target_port}"
	udpPairs = "https://proxy.example/masque?h={target_host}&p={target_port}"
	ipPath   = "https://proxy.example/.well-known/masque/ip/{target}/{ipproto}/"
	ipNone   = "https://proxy.example/vpn"
)

var udpVars = []string{"target_host", "target_port"}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{
		"",
		"http://proxy.example/{target_host}/{target_port}",
		"proxy.example/{target_host}/{target_port}",
		"https:///{target_host}/{target_port}",
		"https://user@proxy.example/{target_host}/{target_port}",
		"https://proxy.example:0/{target_host}/{target_port}",
		"https://proxy.example:99999/{target_host}/{target_port}",
		"https://proxy.example:/{target_host}/{target_port}",
		"https://proxy.example",
		"https://proxy.example{?target_host,target_port}",
		"https://{host}:4433/{target_host}/{target_port}",
		"https://proxy-{n}.example/{target_host}/{target_port}",
		"https://{a,b}/{target_host}/{target_port}",
		"https://{/authority}/{target_host}/{target_port}",
		"https://[fe80::1%25eth0]/{target_host}/{target_port}",
		"https://proxy.example/{+target_host}/{target_port}",
		"https://proxy.example/{#target_host}/{target_port}",
		"https://proxy.example/{target_host:3}/{target_port}",
		"https://proxy.example/{target_host*}/{target_port}",
		"https://proxy.example/{target_host}/{target_host}/{target_port}",
		"https://{target_host}/{target_host}/{target_port}",
		"https://proxy.example/{target_host}/{target_port}#frag",
		"https://proxy.example/{target_host}/{target_port",
		"https://proxy.example/target_host}/{target_port}",
		"https://proxy.example/{target_host}/%zz/{target_port}",
		"https://proxy.example/{ta%20rget}/{target_host}/{target_port}",
		"https://proxy.example/{}/{target_host}/{target_port}",
		"https://proxy.example/{=x}/{target_host}/{target_port}",
		"https://proxy.example/a b/{target_host}/{target_port}",
		"https://proxy.example/{target_host}",               // target_port required
		"https://proxy.example/{target_host}/{targetport}/", // typo
	} {
		_, err := Parse(raw, udpVars...)
		require.ErrorIs(t, err, ErrTemplate, "%q", raw)
	}
}

func TestParseAccepts(t *testing.T) {
	for _, raw := range []string{udpPath, udpAny, udpQuery, udpPairs,
		"HTTPS://PROXY.example/{target_host}/{target_port}",
		"https://[2001:db8::1]:443/{target_host}/{target_port}",
		"https://192.0.2.1/%7Emasque/{target_host}/{target_port}",
		"https://proxy.example/x{/target_host,target_port}",
	} {
		_, err := Parse(raw, udpVars...)
		require.NoError(t, err, raw)
	}
	for _, raw := range []string{ipPath, ipNone, "https://p.example/ip{?target,ipproto}"} {
		tm, err := Parse(raw)
		require.NoError(t, err, raw)
		require.False(t, tm.MatchAnyAuthority())
	}
	tm, err := Parse(udpAny, udpVars...)
	require.NoError(t, err)
	require.True(t, tm.MatchAnyAuthority())
	require.Equal(t, []string{"authority", "target_host", "target_port"}, tm.Varnames())
	require.Equal(t, udpAny, tm.Raw())
}

type matchCase struct {
	uri  string
	want Values // nil: no match
}

func TestMatch(t *testing.T) {
	v := func(h, p string) Values { return Values{"target_host": h, "target_port": p} }
	cases := map[string][]matchCase{
		udpPath: {
			{"https://proxy.example:4433/.well-known/masque/udp/example.com/443/", v("example.com", "443")},
			{"https://PROXY.Example:4433/.well-known/masque/udp/192.0.2.1/53/", v("192.0.2.1", "53")},
			{"HTTPS://proxy.example:4433/.well-known/masque/udp/192.0.2.1/53/", v("192.0.2.1", "53")},
			{"https://proxy.example:4433/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/", v("2001:db8::1", "443")},
			{"https://proxy.example:4433/.well-known/masque/udp/2001%3adb8%3a%3a1/443/", v("2001:db8::1", "443")},
			{"https://proxy.example:4433/.well-known/masque/udp/%65xample.com/443/", v("example.com", "443")},
			{"https://proxy.example:4433/%2Ewell-known/masque/udp/a/1/", v("a", "1")},
			{"https://proxy.example:4433/.well-known/masque/udp/fe80%3A%3A1%25eth0/1/", v("fe80::1%eth0", "1")},
			// A decoded "/" stays inside its segment; ParseHostPort refuses it.
			{"https://proxy.example:4433/.well-known/masque/udp/..%2F..%2Fadmin/443/", v("../../admin", "443")},
			{"https://proxy.example:4433/.well-known/masque/udp/a/%2E%2E%2F/", v("a", "../")},
			// Bad inputs.
			{"https://proxy.example:4433/.well-known/masque/udp/2001:db8::1/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/[2001:db8::1]/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp//443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a//", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/443", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/443/x", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/443/?x", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/443/#x", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/b/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a,b/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/../443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/%2E%2E/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/./443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a%00b/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a%20b/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/%C3%A9/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/é/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/%zz/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a%2/443/", nil},
			{"https://proxy.example:4433/.well-known/masque/udp/a/443/%", nil},
			{"https://proxy.example:4433/.well-known/masque/UDP/a/443/", nil},
			{"https://proxy.example:4433/x/../.well-known/masque/udp/a/443/", nil},
			{"https://proxy.example/.well-known/masque/udp/a/443/", nil},
			{"https://proxy.example:443/.well-known/masque/udp/a/443/", nil},
			{"https://other.example:4433/.well-known/masque/udp/a/443/", nil},
			{"https://user@proxy.example:4433/.well-known/masque/udp/a/443/", nil},
			{"http://proxy.example:4433/.well-known/masque/udp/a/443/", nil},
			{"https://proxy.example:4433", nil},
			{"https://proxy.example:4433?x", nil},
			{"", nil},
		},
		udpAny: {
			{"https://anything.example/.well-known/masque/udp/a/1/", Values{"authority": "anything.example", "target_host": "a", "target_port": "1"}},
			{"https://[::1]:4433/.well-known/masque/udp/a/1/", Values{"authority": "[::1]:4433", "target_host": "a", "target_port": "1"}},
			{"https:///.well-known/masque/udp/a/1/", nil},
			{"https://a@b/.well-known/masque/udp/a/1/", nil},
			{"https://a:b/.well-known/masque/udp/a/1/", nil},
			{"https://[::1/.well-known/masque/udp/a/1/", nil},
			{"https://a%20b/.well-known/masque/udp/a/1/", nil},
		},
		"https://[2001:DB8:0::1]:4433/{target_host}/{target_port}": {
			{"https://[2001:db8::1]:4433/a/1", v("a", "1")},
			{"https://[2001:db8::2]:4433/a/1", nil},
			{"https://[2001:db8::1]/a/1", nil},
		},
		"https://proxy.example/{target_host}/{target_port}": {
			{"https://proxy.example:443/a/1", v("a", "1")},
			{"https://proxy.example/a/1", v("a", "1")},
		},
		udpQuery: {
			{"https://proxy.example/masque?target_host=example.com&target_port=443", v("example.com", "443")},
			{"https://proxy.example/masque?target_host=2001%3Adb8%3A%3A1&target_port=443", v("2001:db8::1", "443")},
			{"https://proxy.example/masque?target_host=a%2Fb&target_port=1", v("a/b", "1")},
			{"https://proxy.example/masque?target_host=atarget_port=443", nil},
			{"https://proxy.example/masque?target_port=443&target_host=a", nil},
			{"https://proxy.example/masque?target_host=a", nil},
			{"https://proxy.example/masque?target_host=&target_port=1", nil},
			{"https://proxy.example/masque?target_host&target_port=1", nil},
			{"https://proxy.example/masque?target_host=a&target_port=1&x=2", nil},
			{"https://proxy.example/masque?target_host=a&target_port=1&", nil},
			{"https://proxy.example/masque?", nil},
			{"https://proxy.example/masque", nil},
			{"https://proxy.example/masque/?target_host=a&target_port=1", nil},
		},
		udpPairs: {
			{"https://proxy.example/masque?h=example.com&p=443", v("example.com", "443")},
			{"https://proxy.example/masque?h=2001%3Adb8%3A%3A1&p=443", v("2001:db8::1", "443")},
			{"https://proxy.example/masque?h=&p=443", nil},
			{"https://proxy.example/masque?h=a&p=", nil},
			{"https://proxy.example/masque?h=a&p=1&p=2", nil},
			{"https://proxy.example/masque?p=1&h=a", nil},
		},
	}
	for raw, cs := range cases {
		tm, err := Parse(raw, udpVars...)
		require.NoError(t, err)
		for _, c := range cs {
			got, ok := tm.Match(c.uri)
			if c.want == nil {
				require.False(t, ok, "template %s matched %q: %v", raw, c.uri, got)
				continue
			}
			require.True(t, ok, "template %s did not match %q", raw, c.uri)
			require.Equal(t, c.want, got, c.uri)
		}
	}
}

func TestMatchOptional(t *testing.T) {
	tm, err := Parse(ipPath)
	require.NoError(t, err)
	got, ok := tm.Match("https://proxy.example/.well-known/masque/ip/192.0.2.0%2F24/17/")
	require.True(t, ok)
	require.Equal(t, Values{"target": "192.0.2.0/24", "ipproto": "17"}, got)
	got, ok = tm.Match("https://proxy.example/.well-known/masque/ip/*/*/")
	require.True(t, ok)
	require.Equal(t, Values{"target": "*", "ipproto": "*"}, got)

	tm, err = Parse(ipNone)
	require.NoError(t, err)
	got, ok = tm.Match("https://proxy.example/vpn")
	require.True(t, ok)
	require.Empty(t, got)
	_, ok = tm.Match("https://proxy.example/vpn/")
	require.False(t, ok)

	tm, err = Parse("https://p.example/ip{?target,ipproto}")
	require.NoError(t, err)
	for uri, want := range map[string]Values{
		"https://p.example/ip":                           {},
		"https://p.example/ip?target=10.0.0.0%2F8":       {"target": "10.0.0.0/8"},
		"https://p.example/ip?ipproto=6":                 {"ipproto": "6"},
		"https://p.example/ip?target=%3A%3A1&ipproto=58": {"target": "::1", "ipproto": "58"},
	} {
		got, ok := tm.Match(uri)
		require.True(t, ok, uri)
		require.Equal(t, want, got, uri)
	}
}

func TestMatchTooLong(t *testing.T) {
	tm, err := Parse(udpPath, udpVars...)
	require.NoError(t, err)
	prefix := "https://proxy.example:4433/.well-known/masque/udp/"
	fits := strings.Repeat("a", len(udpPath)+MaxExpansion-len(prefix)-len("/443/"))
	_, ok := tm.Match(prefix + fits + "/443/")
	require.True(t, ok)
	_, ok = tm.Match(prefix + fits + "a/443/")
	require.False(t, ok)
}

func TestExpand(t *testing.T) {
	cases := []struct {
		raw  string
		vars map[string]string
		want string
	}{
		{udpPath, map[string]string{"target_host": "2001:db8::1", "target_port": "443"},
			"https://proxy.example:4433/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/"},
		{udpPath, map[string]string{"target_host": "example.com", "target_port": "53", "unused": "x"},
			"https://proxy.example:4433/.well-known/masque/udp/example.com/53/"},
		{udpAny, map[string]string{"authority": "proxy.example:4433", "target_host": "a", "target_port": "1"},
			"https://proxy.example:4433/.well-known/masque/udp/a/1/"},
		{udpQuery, map[string]string{"target_host": "192.0.2.1", "target_port": "53"},
			"https://proxy.example/masque?target_host=192.0.2.1&target_port=53"},
		{udpPairs, map[string]string{"target_host": "::1", "target_port": "53"},
			"https://proxy.example/masque?h=%3A%3A1&p=53"},
		{ipPath, map[string]string{"target": "192.0.2.0/24", "ipproto": "17"},
			"https://proxy.example/.well-known/masque/ip/192.0.2.0%2F24/17/"},
		{"https://p.example/ip{?target,ipproto}", map[string]string{"ipproto": "6"},
			"https://p.example/ip?ipproto=6"},
		{ipNone, nil, "https://proxy.example/vpn"},
	}
	for _, c := range cases {
		tm, err := Parse(c.raw)
		require.NoError(t, err)
		got, err := tm.Expand(c.vars)
		require.NoError(t, err)
		require.Equal(t, c.want, got)
		back, ok := tm.Match(got)
		require.True(t, ok, got)
		for k, v := range back {
			require.Equal(t, c.vars[k], v, "%s in %s", k, got)
		}
		require.Len(t, back, len(tm.Varnames())-countMissing(tm, c.vars))
	}
}

func countMissing(tm *Template, vars map[string]string) int {
	n := 0
	for _, name := range tm.Varnames() {
		if _, ok := vars[name]; !ok {
			n++
		}
	}
	return n
}

func TestExpandErrors(t *testing.T) {
	udp, err := Parse(udpPath, udpVars...)
	require.NoError(t, err)
	anyAuth, err := Parse(udpAny, udpVars...)
	require.NoError(t, err)
	for _, c := range []struct {
		tm   *Template
		vars map[string]string
	}{
		{udp, map[string]string{"target_host": "a"}},
		{udp, map[string]string{"target_host": "", "target_port": "1"}},
		{udp, map[string]string{"target_host": "é", "target_port": "1"}},
		{udp, map[string]string{"target_host": "a b", "target_port": "1"}},
		{udp, map[string]string{"target_host": "..", "target_port": "1"}},
		{udp, map[string]string{"target_host": "a\x00", "target_port": "1"}},
		{anyAuth, map[string]string{"target_host": "a", "target_port": "1"}},
		{anyAuth, map[string]string{"authority": "a/b", "target_host": "a", "target_port": "1"}},
		{anyAuth, map[string]string{"authority": "u@a", "target_host": "a", "target_port": "1"}},
	} {
		_, err := c.tm.Expand(c.vars)
		require.ErrorIs(t, err, ErrBadValue, "%v", c.vars)
	}
}

func BenchmarkMatch(b *testing.B) {
	tm, err := Parse(udpPath, udpVars...)
	require.NoError(b, err)
	uri := "https://proxy.example:4433/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tm.Match(uri); !ok {
			b.Fatal("no match")
		}
	}
}

// TestExpandMatchRoundTrip: for every template and every pair of awkward
// values Expand accepts, Match gives the same values back.
func TestExpandMatchRoundTrip(t *testing.T) {
	vals := []string{"", "a", "1", "*", "%", ",", "=", "&", "/", "?", "#", "a=b", "x.y", "::1", "-", "~", "_", "%41", "..."}
	for _, ft := range fuzzTemplates {
		tm, err := Parse(ft.raw, ft.required...)
		require.NoError(t, err)
		for _, a := range vals {
			for _, b := range vals {
				vars := map[string]string{"target_host": a, "target_port": b, "target": a, "ipproto": b, "authority": "proxy.example"}
				uri, err := tm.Expand(vars)
				if err != nil {
					require.ErrorIs(t, err, ErrBadValue)
					continue
				}
				want := Values{}
				for _, name := range tm.Varnames() {
					want[name] = vars[name]
				}
				got, ok := tm.Match(uri)
				require.True(t, ok, "%s: %q", ft.raw, uri)
				require.Equal(t, want, got, "%s: %q", ft.raw, uri)
			}
		}
	}
}
