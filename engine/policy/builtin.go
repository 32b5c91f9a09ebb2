package policy

import "net/netip"

// builtinRule is one built-in refusal.
type builtinRule struct {
	prefix netip.Prefix
	reason string
	rule   string // prefix.String(), kept so a refusal does not format it
}

func br(prefix, reason string) builtinRule {
	return builtinRule{netip.MustParsePrefix(prefix), reason, prefix}
}

// builtin4 holds the IPv4 refusals, the first match wins (so the narrower
// 0.0.0.0/32 and 255.255.255.255/32 come before 0.0.0.0/8 and 240.0.0.0/4).
var builtin4 = [...]builtinRule{
	br("0.0.0.0/32", "unspecified"),
	br("0.0.0.0/8", "this network"),
	br("10.0.0.0/8", "private"),
	br("100.64.0.0/10", "shared address space (CGNAT)"),
	br("127.0.0.0/8", "loopback"),
	br("169.254.0.0/16", "link-local"), // cloud metadata: 169.254.169.254
	br("172.16.0.0/12", "private"),
	br("192.0.0.0/24", "IETF protocol assignment"),
	br("192.168.0.0/16", "private"),
	br("198.18.0.0/15", "benchmarking"),
	br("224.0.0.0/4", "multicast"),
	br("255.255.255.255/32", "broadcast"),
	br("240.0.0.0/4", "reserved"),
}

// builtin6 holds the IPv6 refusals, first match wins. IPv4-mapped
// addresses never get here: Check unmaps them first.
var builtin6 = [...]builtinRule{
	br("::/128", "unspecified"),
	br("::1/128", "loopback"),
	// RFC 4291 §2.5.5.1 deprecated these; nothing legitimate uses them, and
	// a host with an automatic tunnel (sit) may deliver them to IPv4.
	br("::/96", "IPv4-compatible (deprecated)"),
	// RFC 2765's IPv4-translated addresses: a SIIT translator on the path
	// delivers them to the IPv4 address they embed.
	br("::ffff:0:0:0/96", "IPv4-translated"),
	br("fe80::/10", "link-local"),
	br("fec0::/10", "site-local (deprecated)"),
	br("fc00::/7", "private"),
	br("ff00::/8", "multicast"),
	// Teredo embeds an obfuscated IPv4 client address and reaches it
	// through a relay chosen by the network; it is all but retired and its
	// real destination cannot be checked, so it is refused outright.
	br("2001::/32", "Teredo"),
	// RFC 8215's local-use NAT64 prefix is, by definition, the operator's
	// internal translator, and where it embeds the IPv4 address depends on
	// the prefix length the operator chose: refused outright.
	br("64:ff9b:1::/48", "local-use NAT64"),
	br("2001:2::/48", "benchmarking"), // RFC 5180, as 198.18.0.0/15 for IPv4
}

// Prefixes whose addresses are checked by the IPv4 address they embed.
var (
	nat64WKP  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: IPv4 in bits 96-127
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056: IPv4 in bits 16-47
)

// embeddedIPv4 returns the IPv4 address a NAT64 (well-known prefix) or 6to4
// address reaches, and how it embeds it.
func embeddedIPv4(a netip.Addr) (v4 netip.Addr, via string, ok bool) {
	if !a.Is6() {
		return netip.Addr{}, "", false
	}
	b := a.As16()
	switch {
	case nat64WKP.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64 64:ff9b::/96", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4 2002::/16", true
	}
	return netip.Addr{}, "", false
}

// builtinRefusal returns the built-in rule that refuses a (unmapped, no
// zone), with the reason to give; nil when none does.
func builtinRefusal(a netip.Addr) (r *builtinRule, via string) {
	if a.Is4() {
		for i := range builtin4 {
			if builtin4[i].prefix.Contains(a) {
				return &builtin4[i], ""
			}
		}
		return nil, ""
	}
	for i := range builtin6 {
		if builtin6[i].prefix.Contains(a) {
			return &builtin6[i], ""
		}
	}
	if v4, via, ok := embeddedIPv4(a); ok {
		if r, _ := builtinRefusal(v4); r != nil {
			return r, via
		}
	}
	return nil, ""
}

// InternalPrefixes returns every range the built-in rules refuse, the
// NAT64 and 6to4 ranges (whose addresses a per-address Check judges by the
// IPv4 address they embed) and IPv4-mapped IPv6 among them. It is for
// callers that need the refusals as ranges rather than per address, such
// as a CONNECT-IP proxy computing which routes to advertise.
func InternalPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(builtin4)+len(builtin6)+3)
	for _, r := range builtin4 {
		out = append(out, r.prefix)
	}
	for _, r := range builtin6 {
		out = append(out, r.prefix)
	}
	return append(out, nat64WKP, sixToFour, netip.MustParsePrefix("::ffff:0:0/96"))
}
