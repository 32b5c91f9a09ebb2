package template

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Target is a request's destination as the client named it: an IP literal
// (Addr valid, Name empty) or a DNS name (Name set, Addr invalid), and a
// port in 1..65535.
type Target struct {
	Addr netip.Addr // valid when the host was an IP literal (legacy IPv4 spellings included)
	Name string     // lower-case DNS name otherwise; a trailing dot is kept
	Port uint16
}

// String returns host:port, with brackets around an IPv6 literal.
func (t Target) String() string {
	if t.Addr.IsValid() {
		return netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	return net.JoinHostPort(t.Name, strconv.Itoa(int(t.Port)))
}

// ParseHostPort validates a request's decoded target_host and target_port.
// A proxy answers 400 to its errors (ErrBadHost, ErrBadPort).
//
// port is 1 to 5 decimal digits, 1..65535, without sign or leading zero.
//
// host is one of:
//   - an IPv6 literal, unbracketed as RFC 9298 §2 asks; "[::1]" is also
//     accepted since it is unambiguous. A zone ("fe80::1%eth0") is refused:
//     it names an interface of the proxy, which a client has no business
//     choosing.
//   - an IPv4 address in any spelling inet_aton(3) and the WHATWG URL
//     standard's IPv4 parser accept: "127.0.0.1", "2130706433",
//     "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", with an optional
//     trailing dot. These become an Addr, never a name for a resolver, so
//     the policy sees the address they denote. As in WHATWG, a host whose
//     last label is a number (decimal digits, or "0x" and hex digits) is an
//     IPv4 address or nothing: "1.2.3.256" and "example.123" are
//     ErrBadHost.
//   - a DNS name: letters, digits, hyphens and dots; labels of 1 to 63
//     characters that neither start nor end with a hyphen; at most 253
//     characters without the optional trailing dot. It is lower-cased.
func ParseHostPort(host, port string) (Target, error) {
	p, err := parsePort(port)
	if err != nil {
		return Target{}, err
	}
	t := Target{Port: p}
	switch {
	case host == "":
		return Target{}, fmt.Errorf("%w: empty", ErrBadHost)
	case strings.IndexByte(host, ':') >= 0:
		t.Addr, err = parseIPv6(host)
	default:
		t.Addr, t.Name, err = parseIPv4OrName(host)
	}
	if err != nil {
		return Target{}, err
	}
	return t, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("%w: %q", ErrBadPort, s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %q", ErrBadPort, s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("%w: %q", ErrBadPort, s)
	}
	return uint16(n), nil
}

func parseIPv6(host string) (netip.Addr, error) {
	s := host
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, fmt.Errorf("%w: %q is not an IPv6 literal", ErrBadHost, host)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: %q has a zone", ErrBadHost, host)
	}
	return a, nil
}

func parseIPv4OrName(host string) (netip.Addr, string, error) {
	s := strings.TrimSuffix(host, ".")
	if s == "" || len(s) > 253 {
		return netip.Addr{}, "", fmt.Errorf("%w: %q", ErrBadHost, host)
	}
	last := s[strings.LastIndexByte(s, '.')+1:]
	if isIPv4Number(last) {
		a, ok := parseLegacyIPv4(s)
		if !ok {
			return netip.Addr{}, "", fmt.Errorf("%w: %q ends in a number but is not an IPv4 address", ErrBadHost, host)
		}
		return a, "", nil
	}
	for label := range strings.SplitSeq(s, ".") {
		if !validLabel(label) {
			return netip.Addr{}, "", fmt.Errorf("%w: %q is not a DNS name", ErrBadHost, host)
		}
	}
	return netip.Addr{}, strings.ToLower(host), nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if !isAlnum(l[i]) && l[i] != '-' {
			return false
		}
	}
	return true
}
