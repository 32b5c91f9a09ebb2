package template

import (
	"fmt"
	"net/netip"
	"strings"
)

// This file holds the lexical helpers around the RFC 6570 library: listing
// a template's expressions, percent-encoding normalization, and authority
// checks. None of it expands or matches a template.

// expr is one "{...}" expression of a template, as written.
type expr struct {
	op    byte     // 0 for simple expansion, else one of "/.;?&" (others are refused)
	names []string // variable names, in order
}

// scanExprs lists the expressions of s (a template without its scheme and
// authority). It refuses what MASQUE templates have no use for and what
// would weaken matching:
//   - the reserved ("+") and fragment ("#") operators, whose values may hold
//     raw "/", "?" and "#" and so could span path segments or the query;
//   - prefix (":n") and explode ("*") modifiers: every MASQUE variable is a
//     single string;
//   - a variable named twice, which the library would capture as a list;
//   - variable names with percent-encoded characters.
func scanExprs(s string) ([]expr, error) {
	var out []expr
	for {
		i := strings.IndexByte(s, '{')
		if j := strings.IndexByte(s, '}'); j >= 0 && (i < 0 || j < i) {
			return nil, fmt.Errorf("%w: unbalanced '}'", ErrTemplate)
		}
		if i < 0 {
			return out, nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%w: unterminated expression", ErrTemplate)
		}
		raw := s[i : i+j+1]
		body := s[i+1 : i+j]
		s = s[i+j+1:]
		var e expr
		if body != "" && strings.IndexByte("/.;?&", body[0]) >= 0 {
			e.op, body = body[0], body[1:]
		}
		for name := range strings.SplitSeq(body, ",") {
			if !validVarName(name) {
				return nil, fmt.Errorf("%w: expression %s: %q is not a plain variable name (operators + and #, modifiers :n and * are not supported)",
					ErrTemplate, raw, name)
			}
			e.names = append(e.names, name)
		}
		out = append(out, e)
	}
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '_' || (c == '.' && i > 0)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isUnreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// normalizePct rewrites s to the percent-encoding normal form of RFC 3986
// §6.2.2: triplets that encode an unreserved character are decoded, the
// others get upper-case hex. Reserved characters stay encoded, so "%2F" is
// still not a segment separator afterwards. One exception goes the other
// way: a raw "*" becomes "%2A", because RFC 9484 §4.6 shows CONNECT-IP's
// wildcard sent raw ("/ip/*/*/") where RFC 6570 expansion writes "%2A"; in
// a template "*" can only be literal text (scanExprs refuses the explode
// modifier). ok is false when a '%' is not followed by two hex digits.
func normalizePct(s string) (norm string, ok bool) {
	i := strings.IndexAny(s, "%*")
	if i < 0 {
		return s, true
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		default:
			b.WriteByte(c)
		case '*':
			b.WriteString("%2A")
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			if d := hi<<4 | lo; isUnreserved(d) {
				b.WriteByte(d)
			} else {
				b.WriteByte('%')
				b.WriteByte(hexDigits[hi])
				b.WriteByte(hexDigits[lo])
			}
			i += 2
		}
	}
	return b.String(), true
}

// validValue reports whether a decoded variable value may appear in a match
// or be expanded: visible ASCII only (0x21-0x7E), and not a dot-segment
// ("." or ".."), which a path normalizer between client and proxy could
// remove. Hosts, ports, IP prefixes and protocol numbers need nothing
// more. A "/" is allowed (CONNECT-IP's target is a prefix such as
// "192.0.2.0/24"); it can only have arrived percent-encoded, within one
// segment.
func validValue(v string) bool {
	if v == "." || v == ".." {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// canonAuthority checks that a is "host" or "host:port" with no userinfo
// and no percent-encoding, and returns the form two authorities are
// compared in: the host lower-cased (an IPv6 literal in its RFC 5952
// form), the port dropped when it is https's default 443. host is a name of unreserved characters or a bracketed IPv6
// literal without a zone.
func canonAuthority(a string) (string, bool) {
	host, port := a, ""
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", false
		}
		ip, err := netip.ParseAddr(a[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", false
		}
		host, port = "["+ip.String()+"]", a[end+1:]
		if port != "" && port[0] != ':' {
			return "", false
		}
	} else {
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i:]
		}
		if host == "" {
			return "", false
		}
		for i := 0; i < len(host); i++ {
			if !isUnreserved(host[i]) {
				return "", false
			}
		}
	}
	if port != "" {
		port = port[1:]
		if _, err := parsePort(port); err != nil {
			return "", false
		}
		if port == "443" {
			port = ""
		}
	}
	host = strings.ToLower(host)
	if port == "" {
		return host, true
	}
	return host + ":" + port, true
}

// splitURI splits "https://authority/rest" (scheme case-insensitive) into
// the authority and the rest. The authority ends at the first '/', '?' or
// '#'; rest is empty or starts with one of those.
func splitURI(u string) (authority, rest string, ok bool) {
	const scheme = "https://"
	if len(u) < len(scheme) || !strings.EqualFold(u[:len(scheme)], scheme) {
		return "", "", false
	}
	u = u[len(scheme):]
	end := strings.IndexAny(u, "/?#")
	if end < 0 {
		return u, "", true
	}
	return u[:end], u[end:], true
}
