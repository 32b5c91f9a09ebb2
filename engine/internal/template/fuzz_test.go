package template

import (
	"math/big"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var fuzzTemplates = []struct {
	raw      string
	required []string
}{
	{udpPath, udpVars},
	{udpAny, udpVars},
	{udpQuery, udpVars},
	{udpPairs, udpVars},
	{ipPath, nil},
	{"https://p.example/ip{?target,ipproto}", nil},
	{"https://p.example/x{/target_host,target_port}{?ipproto}", nil},
	{ipNone, nil},
}

// FuzzMatch: Match never panics; a match's values re-expand to a URI that
// matches again with the same values; and whatever Expand accepts, Match
// gives back.
func FuzzMatch(f *testing.F) {
	f.Add("https://proxy.example:4433/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/", "192.0.2.1", "443")
	f.Add("https://proxy.example/masque?target_host=a&target_port=1", "2001:db8::1", "53")
	f.Add("https://proxy.example/masque?h=a&p=1", "..", "*")
	f.Add("https://proxy.example/.well-known/masque/ip/*/*/", "10.0.0.0/8", "")
	f.Add("https://p.example/xy/z?ipproto=%2A", "%41", "a,b")
	tms := make([]*Template, len(fuzzTemplates))
	for i, ft := range fuzzTemplates {
		tm, err := Parse(ft.raw, ft.required...)
		if err != nil {
			f.Fatal(err)
		}
		tms[i] = tm
	}
	f.Fuzz(func(t *testing.T, uri, a, b string) {
		for _, tm := range tms {
			if vals, ok := tm.Match(uri); ok {
				again, err := tm.Expand(vals)
				if err != nil {
					t.Fatalf("%s: Match(%q) = %v, which does not expand: %v", tm.Raw(), uri, vals, err)
				}
				checkMatch(t, tm, again, vals)
			}
			vars := map[string]string{"target_host": a, "target_port": b, "target": a, "ipproto": b, "authority": "proxy.example"}
			uri, err := tm.Expand(vars)
			if err != nil {
				continue
			}
			want := Values{}
			for _, name := range tm.Varnames() {
				want[name] = vars[name]
			}
			checkMatch(t, tm, uri, want)
		}
	})
}

func checkMatch(t *testing.T, tm *Template, uri string, want Values) {
	t.Helper()
	got, ok := tm.Match(uri)
	if !ok {
		t.Fatalf("%s: %q (expanded from %v) does not match", tm.Raw(), uri, want)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %q matches as %v, want %v", tm.Raw(), uri, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %q matches as %v, want %v", tm.Raw(), uri, got, want)
		}
	}
}

// FuzzParseHostPort: never panics; accepted ports are 1..65535 and
// canonical; accepted names obey the DNS rules; IPv4 spellings agree with
// a reference parser in both directions.
func FuzzParseHostPort(f *testing.F) {
	for _, s := range []string{"example.com", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "1.2.3.256",
		"fe80::1%eth0", "[::1]", "example.123", "0x", "4294967296", "a-.b", "1.2.3.4."} {
		f.Add(s, "443")
	}
	f.Add("a", "0")
	f.Add("a", "65536")
	f.Add("a", "+1")
	f.Fuzz(func(t *testing.T, host, port string) {
		tg, err := ParseHostPort(host, port)
		refAddr, refIsNum := refIPv4(host)
		if err != nil {
			if refIsNum && refAddr.IsValid() && refPortOK(port) {
				t.Fatalf("ParseHostPort(%q, %q) = %v; reference parses %v", host, port, err, refAddr)
			}
			return
		}
		if tg.Port == 0 || strconv.Itoa(int(tg.Port)) != port {
			t.Fatalf("ParseHostPort(%q, %q) accepted port %d", host, port, tg.Port)
		}
		switch {
		case tg.Name != "":
			if tg.Addr.IsValid() || refIsNum || !refName(tg.Name) || tg.Name != strings.ToLower(host) {
				t.Fatalf("ParseHostPort(%q): accepted name %q (reference: number %v)", host, tg.Name, refIsNum)
			}
		case strings.Contains(host, ":"):
			if !tg.Addr.Is6() || tg.Addr.Zone() != "" {
				t.Fatalf("ParseHostPort(%q) = %v", host, tg.Addr)
			}
		default:
			if !tg.Addr.Is4() || tg.Addr != refAddr {
				t.Fatalf("ParseHostPort(%q) = %v; reference gives %v", host, tg.Addr, refAddr)
			}
		}
	})
}

func refPortOK(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

var (
	refLabel  = `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`
	refNameRE = regexp.MustCompile(`^` + refLabel + `(\.` + refLabel + `)*\.?$`)
	refHexRE  = regexp.MustCompile(`^0[xX]([0-9a-fA-F]*)$`)
	refOctRE  = regexp.MustCompile(`^0([0-7]*)$`)
	refDecRE  = regexp.MustCompile(`^[1-9][0-9]*$`)
	refNumRE  = regexp.MustCompile(`^([0-9]+|0[xX][0-9a-fA-F]*)$`)
)

func refName(n string) bool {
	return refNameRE.MatchString(n) && len(strings.TrimSuffix(n, ".")) <= 253
}

// refIPv4 is a second, independent reading of the WHATWG IPv4 parser using
// regular expressions and big integers. isNum reports whether the host's
// last label is a number (so the host is an IPv4 address or invalid); addr
// is valid when it is an address.
func refIPv4(host string) (addr netip.Addr, isNum bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if !refNumRE.MatchString(parts[len(parts)-1]) {
		return netip.Addr{}, false
	}
	if len(parts) > 4 {
		return netip.Addr{}, true
	}
	total := new(big.Int)
	for i, p := range parts {
		v := new(big.Int)
		var ok bool
		switch {
		case refHexRE.MatchString(p):
			digits := refHexRE.FindStringSubmatch(p)[1]
			_, ok = v.SetString("0"+digits, 16)
		case refOctRE.MatchString(p):
			_, ok = v.SetString("0"+p[1:], 8)
		case refDecRE.MatchString(p):
			_, ok = v.SetString(p, 10)
		}
		if !ok {
			return netip.Addr{}, true
		}
		limit := big.NewInt(256)
		if i == len(parts)-1 {
			limit.Lsh(big.NewInt(1), uint(8*(5-len(parts))))
		}
		if v.Cmp(limit) >= 0 {
			return netip.Addr{}, true
		}
		if i < len(parts)-1 {
			v.Lsh(v, uint(8*(3-i)))
		}
		total.Add(total, v)
	}
	var b [4]byte
	total.FillBytes(b[:])
	return netip.AddrFrom4(b), true
}
