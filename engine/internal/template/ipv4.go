package template

import (
	"net/netip"
	"strings"
)

// Legacy IPv4 spellings, parsed as the WHATWG URL standard's IPv4 parser
// (https://url.spec.whatwg.org/#concept-ipv4-parser) and inet_aton(3) do:
// one to four dot-separated numbers, each decimal, octal (leading "0") or
// hex (leading "0x" or "0X"; "0x" alone is 0); every number but the last is
// one byte, the last fills the remaining bytes. Hosts in these spellings
// must become addresses before the policy sees them: a resolver given
// "2130706433" may well connect to 127.0.0.1.

// isIPv4Number reports whether a label is a number in the sense of the
// WHATWG "ends in a number" check: decimal digits, or "0x"/"0X" followed
// by hex digits.
func isIPv4Number(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			if _, ok := unhex(l[i]); !ok {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// parseIPv4Number parses one part. Values above 2^32 saturate to 2^32,
// which every caller refuses.
func parseIPv4Number(s string) (uint64, bool) {
	const tooBig = 1 << 32
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	case s == "":
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d, ok := unhex(s[i])
		if !ok || uint64(d) >= base {
			return 0, false
		}
		n = min(n*base+uint64(d), tooBig)
	}
	return n, true
}

// parseLegacyIPv4 parses s (without a trailing dot) as an IPv4 address in
// any legacy spelling.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for p := range strings.SplitSeq(s, ".") {
		if n == len(parts) {
			return netip.Addr{}, false
		}
		v, ok := parseIPv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
	}
	var ip uint64
	for i := 0; i < n-1; i++ {
		if parts[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= parts[i] << (8 * (3 - i))
	}
	lastBits := 8 * (5 - n) // the last part fills bytes n-1..3
	if parts[n-1] >= 1<<lastBits {
		return netip.Addr{}, false
	}
	ip |= parts[n-1]
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}
