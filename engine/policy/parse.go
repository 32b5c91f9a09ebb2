package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefixes parses a comma-separated list of prefixes and addresses,
// such as "10.0.0.0/8, ::1/128, 192.0.2.7"; a bare address becomes a /32
// or /128. Spaces around entries are ignored; an empty or all-space list
// is empty. An empty entry, a zone, or a prefix with bits set beyond its
// length ("10.1.2.3/8": was 10.0.0.0/8 or 10.1.2.3/32 meant?) is an error.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := forEntries(list, func(e string) error {
		var pre netip.Prefix
		if strings.IndexByte(e, '/') >= 0 {
			var err error
			if pre, err = netip.ParsePrefix(e); err != nil {
				return err
			}
			if pre != pre.Masked() {
				return fmt.Errorf("%q has bits set beyond its length (%v?)", e, pre.Masked())
			}
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return err
			}
			if a.Zone() != "" {
				return fmt.Errorf("%q has a zone", e)
			}
			pre = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pre)
		return nil
	})
	return out, err
}

// ParsePorts parses a comma-separated list of ports and ranges, such as
// "53, 443, 8000-9000". Ports are decimal, 0 to 65535; a range's first
// port must not be above its last. Spaces around entries are ignored; an
// empty or all-space list is empty.
func ParsePorts(list string) ([]PortRange, error) {
	var out []PortRange
	err := forEntries(list, func(e string) error {
		lo, hi, isRange := strings.Cut(e, "-")
		r := PortRange{}
		var err error
		if r.Lo, err = parsePort(strings.TrimSpace(lo)); err != nil {
			return err
		}
		r.Hi = r.Lo
		if isRange {
			if r.Hi, err = parsePort(strings.TrimSpace(hi)); err != nil {
				return err
			}
		}
		if r.Lo > r.Hi {
			return fmt.Errorf("range %q is empty", e)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %q is above 65535", s)
	}
	return uint16(n), nil
}

// forEntries calls f for each comma-separated, space-trimmed entry.
func forEntries(list string, f func(string) error) error {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	for e := range strings.SplitSeq(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return fmt.Errorf("policy: empty entry in %q", list)
		}
		if err := f(e); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	return nil
}
