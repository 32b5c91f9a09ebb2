package policy

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// The reference below re-states the policy with integer arithmetic on a
// 128-bit address (hi, lo) and its own copy of the rule table, sharing no
// code with Check.

type refRule struct {
	hi, lo uint64 // IPv6 rules; for IPv4 rules, lo holds the address
	bits   int
	is4    bool
	reason string
}

func (r refRule) contains(hi, lo uint64, is4 bool) bool {
	if r.is4 != is4 {
		return false
	}
	if is4 {
		return r.bits == 0 || uint32(lo)>>(32-r.bits) == uint32(r.lo)>>(32-r.bits)
	}
	switch {
	case r.bits == 0:
		return true
	case r.bits <= 64:
		return hi>>(64-r.bits) == r.hi>>(64-r.bits)
	case r.bits == 128:
		return hi == r.hi && lo == r.lo
	default:
		return hi == r.hi && lo>>(128-r.bits) == r.lo>>(128-r.bits)
	}
}

func v4rule(a, b, c, d byte, bits int, reason string) refRule {
	return refRule{lo: uint64(a)<<24 | uint64(b)<<16 | uint64(c)<<8 | uint64(d), bits: bits, is4: true, reason: reason}
}

var refRules4 = []refRule{
	v4rule(0, 0, 0, 0, 32, "unspecified"),
	v4rule(0, 0, 0, 0, 8, "this network"),
	v4rule(127, 0, 0, 0, 8, "loopback"),
	v4rule(10, 0, 0, 0, 8, "private"),
	v4rule(172, 16, 0, 0, 12, "private"),
	v4rule(192, 168, 0, 0, 16, "private"),
	v4rule(100, 64, 0, 0, 10, "shared address space (CGNAT)"),
	v4rule(169, 254, 0, 0, 16, "link-local"),
	v4rule(255, 255, 255, 255, 32, "broadcast"),
	v4rule(224, 0, 0, 0, 4, "multicast"),
	v4rule(240, 0, 0, 0, 4, "reserved"),
	v4rule(192, 0, 0, 0, 24, "IETF protocol assignment"),
	v4rule(198, 18, 0, 0, 15, "benchmarking"),
}

var refRules6 = []refRule{
	{0, 0, 128, false, "unspecified"},
	{0, 1, 128, false, "loopback"},
	{0, 0, 96, false, "IPv4-compatible (deprecated)"},
	{0xfe80 << 48, 0, 10, false, "link-local"},
	{0xfec0 << 48, 0, 10, false, "site-local (deprecated)"},
	{0xfc00 << 48, 0, 7, false, "private"},
	{0xff00 << 48, 0, 8, false, "multicast"},
	{0x2001 << 48, 0, 32, false, "Teredo"},
	{0x0064_ff9b_0001 << 16, 0, 48, false, "local-use NAT64"},
	{0x2001_0002 << 32, 0, 48, false, "benchmarking"},
}

func refBuiltin4(v4 uint32) string {
	for _, r := range refRules4 { // overlapping rules are ordered so the narrower one is found first
		if r.bits == 32 && r.contains(0, uint64(v4), true) {
			return r.reason
		}
	}
	for _, r := range refRules4 {
		if r.contains(0, uint64(v4), true) {
			return r.reason
		}
	}
	return ""
}

type refPolicy struct {
	allow, deny           []refRule
	allowPorts, denyPorts []PortRange
}

func u32ToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// check returns "" when the target is allowed, else the refusal reason.
func (p refPolicy) check(hi, lo uint64, is4 bool, port uint16) string {
	if !is4 && hi == 0 && lo>>32 == 0xffff { // IPv4-mapped
		is4, lo = true, lo&0xffffffff
	}
	if port == 0 {
		return "port 0"
	}
	for _, r := range p.denyPorts {
		if r.Lo <= port && port <= r.Hi {
			return "port denied"
		}
	}
	if len(p.allowPorts) > 0 {
		in := false
		for _, r := range p.allowPorts {
			in = in || (r.Lo <= port && port <= r.Hi)
		}
		if !in {
			return "port not allowed"
		}
	}
	var emb uint32
	var via string
	switch {
	case is4:
	case hi == 0x0064_ff9b_0000_0000 && lo>>32 == 0:
		emb, via = uint32(lo), "NAT64 64:ff9b::/96"
	case hi>>48 == 0x2002:
		emb, via = uint32(hi>>16), "6to4 2002::/16"
	}
	for _, r := range p.deny {
		if r.contains(hi, lo, is4) || (via != "" && r.contains(0, uint64(emb), true)) {
			return "denied by rule " + r.String()
		}
	}
	for _, r := range p.allow {
		if r.contains(hi, lo, is4) {
			return ""
		}
	}
	if is4 {
		return refBuiltin4(uint32(lo))
	}
	for _, r := range refRules6 {
		if r.contains(hi, lo, false) {
			return r.reason
		}
	}
	if via != "" {
		if reason := refBuiltin4(emb); reason != "" {
			return reason + " (IPv4 " + u32ToAddr(emb).String() + " in " + via + ")"
		}
	}
	return ""
}

func (r refRule) String() string {
	var a netip.Addr
	if r.is4 {
		a = u32ToAddr(uint32(r.lo))
	} else {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], r.hi)
		binary.BigEndian.PutUint64(b[8:], r.lo)
		a = netip.AddrFrom16(b)
	}
	return netip.PrefixFrom(a, r.bits).Masked().String()
}

func toAddr(hi, lo uint64, is4 bool) netip.Addr {
	if is4 {
		return u32ToAddr(uint32(lo))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// overlays put a random address into an interesting range: the high bits
// come from the overlay, the rest from the fuzzer.
var overlays = []struct {
	hi, lo uint64
	bits   int
}{
	{0, 0, 96},                                // IPv4-compatible (::/96, ::, ::1)
	{0, 0xffff << 32, 96},                     // IPv4-mapped
	{0x0064_ff9b_0000_0000, 0, 96},            // NAT64
	{0x0064_ff9b_0001 << 16, 0, 48},           // local-use NAT64
	{0x2002 << 48, 0, 16},                     // 6to4
	{0x2001 << 48, 0, 32},                     // Teredo
	{0xfe80 << 48, 0, 9},                      // link-local and site-local
	{0xfc00 << 48, 0, 6},                      // ULA
	{0xff00 << 48, 0, 8},                      // multicast
	{0x0064_ff9b_0000_0000, 0, 32},            // around NAT64
	{0x2002_7f00_0000_0000, 0, 24},            // 6to4 of loopback
	{0x0064_ff9b_0000_0000, 0xa9fe_0000, 112}, // NAT64 of link-local
	{0x2001_0002 << 32, 0, 47},                // IPv6 benchmarking and next to it
}

func overlay(hi, lo uint64, sel uint8) (uint64, uint64) {
	i := int(sel) % (len(overlays) + 1)
	if i == len(overlays) {
		return hi, lo
	}
	o := overlays[i]
	if o.bits <= 64 {
		m := ^uint64(0) >> o.bits
		return o.hi | hi&m, lo
	}
	m := ^uint64(0) >> (o.bits - 64)
	return o.hi, o.lo | lo&m
}

// noOverlay is a selector that leaves IPv4 and IPv6 addresses as they are
// (TestNoOverlay checks it); the seed files under testdata use it.
const noOverlay = uint8(181)

// overlay4 puts a random IPv4 address into or next to one of the
// reference's ranges: it keeps one bit fewer than the range's length, so
// about half the results fall just outside.
func overlay4(v uint32, sel uint8) uint64 {
	i := int(sel) % (len(refRules4) + 1)
	if i == len(refRules4) {
		return uint64(v)
	}
	r := refRules4[i]
	keep := max(r.bits-1, 0)
	m := uint32(0xffffffff) >> keep
	return uint64(uint32(r.lo)&^m | v&m)
}

// FuzzCheck compares Check with the reference on random addresses, under
// the default policy and under one with a random Allow or Deny rule.
func FuzzCheck(f *testing.F) {
	f.Add(uint64(0), uint64(0x7f000001), true, uint16(80), noOverlay, uint64(0), uint64(0x7f000001), uint8(32), true, false)
	f.Add(uint64(0x2002_7f00_0001_0000), uint64(0), false, uint16(443), uint8(4), uint64(0), uint64(0x0a000000), uint8(8), true, true)
	f.Add(uint64(0), uint64(0xffff_0a01_0203), false, uint16(0), uint8(1), uint64(0xfe80<<48), uint64(1), uint8(128), false, false)
	f.Add(uint64(0x0064_ff9b_0000_0000), uint64(0x0808_0808), false, uint16(53), uint8(2), uint64(0), uint64(0xffff_0808_0800), uint8(120), false, true)
	for sel := range uint8(16) { // every overlay, with addresses spread over each range
		x := uint64(sel) * 0x9e3779b97f4a7c15
		f.Add(x, x>>7, true, uint16(443), sel, uint64(0), uint64(0), uint8(0), true, true)
		f.Add(x, x>>7, false, uint16(443), sel, uint64(0), uint64(0), uint8(0), true, true)
		f.Add(^x, ^x>>3, true, uint16(80), sel, x, x, uint8(sel*7), sel%2 == 0, sel%3 == 0)
		f.Add(^x, ^x>>3, false, uint16(80), sel, x, x, uint8(sel*7), sel%2 == 0, sel%3 == 0)
	}
	f.Fuzz(func(t *testing.T, hi, lo uint64, is4 bool, port uint16, sel uint8,
		ruleHi, ruleLo uint64, ruleBits uint8, ruleIs4, deny bool) {
		if is4 {
			lo = overlay4(uint32(lo), sel)
		} else {
			hi, lo = overlay(hi, lo, sel)
		}
		ap := netip.AddrPortFrom(toAddr(hi, lo, is4), port)
		compare(t, Default(), refPolicy{}, ap, hi, lo, is4, port)

		// One random user rule, plus fixed port rules.
		ruleAddr := toAddr(ruleHi, ruleLo, ruleIs4)
		bits := int(ruleBits) % (ruleAddr.BitLen() + 1)
		pre := netip.PrefixFrom(ruleAddr, bits)
		rr := refRule{hi: ruleHi, lo: ruleLo, bits: bits, is4: ruleIs4}
		if !ruleIs4 && ruleHi == 0 && ruleLo>>32 == 0xffff && bits >= 96 {
			rr = refRule{lo: ruleLo & 0xffffffff, bits: bits - 96, is4: true}
		}
		cfg := Config{DenyPorts: []PortRange{{25, 25}}, AllowPorts: []PortRange{{1, 1024}, {4000, 65535}}}
		ref := refPolicy{denyPorts: cfg.DenyPorts, allowPorts: cfg.AllowPorts}
		if deny {
			cfg.Deny, ref.deny = []netip.Prefix{pre}, []refRule{rr}
		} else {
			cfg.Allow, ref.allow = []netip.Prefix{pre}, []refRule{rr}
		}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		compare(t, p, ref, ap, hi, lo, is4, port)
	})
}

func compare(t *testing.T, p *Policy, ref refPolicy, ap netip.AddrPort, hi, lo uint64, is4 bool, port uint16) {
	t.Helper()
	want := ref.check(hi, lo, is4, port)
	got := ""
	if err := p.Check(ap); err != nil {
		got = err.(*Refusal).Reason
		if got == "" {
			t.Fatalf("Check(%v): refusal without a reason", ap)
		}
	}
	if got != want {
		t.Fatalf("Check(%v) under %+v = %q, reference %q", ap, ref, got, want)
	}
}

func TestNoOverlay(t *testing.T) {
	if hi, lo := overlay(1, 2, noOverlay); hi != 1 || lo != 2 {
		t.Fatal("noOverlay changes IPv6 addresses")
	}
	if overlay4(3, noOverlay) != 3 {
		t.Fatal("noOverlay changes IPv4 addresses")
	}
}
