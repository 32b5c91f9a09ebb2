package ipaddr

import (
	"net/netip"
	"slices"
)

// A Range is the inclusive address range [Start, End] of one family.
type Range struct{ Start, End netip.Addr }

// PrefixRange is the range p covers.
func PrefixRange(p netip.Prefix) Range { return Range{p.Masked().Addr(), LastAddr(p)} }

// LastAddr is the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// Intersect returns the smaller of two prefixes if one contains the other.
func Intersect(a, b netip.Prefix) (netip.Prefix, bool) {
	if a.Addr().Is4() != b.Addr().Is4() || !a.Overlaps(b) {
		return netip.Prefix{}, false
	}
	if a.Bits() >= b.Bits() {
		return a, true
	}
	return b, true
}

// Merge sorts rs (IPv4 first) in place and merges overlapping or adjacent
// ranges, so the result can be advertised as RFC 9484 §4.7.3 requires.
func Merge(rs []Range) []Range {
	slices.SortFunc(rs, func(x, y Range) int { return x.Start.Compare(y.Start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End.Is4() == r.Start.Is4() {
			last := &out[n-1]
			if next := last.End.Next(); r.Start.Compare(last.End) <= 0 || (next.IsValid() && next == r.Start) {
				if r.End.Compare(last.End) > 0 {
					last.End = r.End
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Complement is every IPv4 and IPv6 address outside the given prefixes, as
// the fewest prefixes that cover it.
func Complement(excluded []netip.Prefix) []netip.Prefix {
	all := []Range{
		{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255")},
		{netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
	}
	for _, p := range excluded {
		all = subtract(all, PrefixRange(p))
	}
	var out []netip.Prefix
	for _, r := range all {
		out = append(out, prefixes(r)...)
	}
	return out
}

// Subtract is ps without the addresses of excluded, as the fewest
// prefixes that cover what is left.
func Subtract(ps, excluded []netip.Prefix) []netip.Prefix {
	if len(excluded) == 0 {
		return ps
	}
	var rs []Range
	for _, p := range ps {
		rs = append(rs, PrefixRange(p))
	}
	for _, x := range excluded {
		rs = subtract(rs, PrefixRange(x))
	}
	var out []netip.Prefix
	for _, r := range Merge(rs) {
		out = append(out, prefixes(r)...)
	}
	return out
}

// subtract removes x from every range of rs.
func subtract(rs []Range, x Range) []Range {
	var out []Range
	for _, r := range rs {
		if r.Start.Is4() != x.Start.Is4() || x.End.Compare(r.Start) < 0 || r.End.Compare(x.Start) < 0 {
			out = append(out, r)
			continue
		}
		if r.Start.Compare(x.Start) < 0 {
			out = append(out, Range{r.Start, x.Start.Prev()})
		}
		if x.End.Compare(r.End) < 0 {
			out = append(out, Range{x.End.Next(), r.End})
		}
	}
	return out
}

// prefixes splits a range into the fewest prefixes that cover it.
func prefixes(r Range) []netip.Prefix {
	var out []netip.Prefix
	start := r.Start
	for {
		bits := start.BitLen()
		// The shortest prefix at start that stays within the range.
		l := bits
		for l > 0 {
			p := netip.PrefixFrom(start, l-1)
			if p.Masked().Addr() != start || LastAddr(p).Compare(r.End) > 0 {
				break
			}
			l--
		}
		p := netip.PrefixFrom(start, l)
		out = append(out, p)
		last := LastAddr(p)
		if last.Compare(r.End) >= 0 {
			return out
		}
		start = last.Next()
	}
}
