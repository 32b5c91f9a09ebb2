package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Config adds exceptions and refusals to the built-in ones. All lists are
// copied by New.
type Config struct {
	// Allow opens exactly these prefixes, even where a built-in refusal
	// covers them: Allow 127.0.0.1/32 opens 127.0.0.1 and nothing else. It
	// is a list of exceptions, not an allow-list: addresses outside it are
	// still allowed unless refused. An IPv4 prefix also opens the
	// IPv4-mapped form of its addresses, but not their NAT64 or 6to4 forms.
	Allow []netip.Prefix
	// Deny refuses these prefixes, even where Allow opens them. It also
	// refuses a NAT64 (64:ff9b::/96) or 6to4 address whose embedded IPv4
	// address it covers.
	Deny []netip.Prefix
	// AllowPorts, if not empty, refuses every port outside these ranges.
	AllowPorts []PortRange
	// DenyPorts refuses these ports.
	DenyPorts []PortRange
}

// PortRange is the ports Lo through Hi, both included.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// String returns "Lo-Hi", or "Lo" for a single port.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Policy decides whether a tunnel may go to an address and port. It is
// immutable and safe for concurrent use. The zero Policy, and a nil
// *Policy, apply the built-in refusals only, as Default does.
//
// Check decides in this order; the first step that decides wins:
//
//  1. an invalid address or port 0: refused;
//  2. a port in DenyPorts, or (when AllowPorts is not empty) a port
//     outside AllowPorts: refused;
//  3. an address in Deny, or a NAT64/6to4 address whose embedded IPv4
//     address is in Deny: refused;
//  4. an address in Allow: allowed;
//  5. an address a built-in rule refuses (see the package doc): refused;
//  6. otherwise: allowed.
//
// IPv4-mapped IPv6 addresses are unmapped and zones dropped before any of
// this, so ::ffff:127.0.0.1 is 127.0.0.1 for every rule, user rules
// included.
//
// Allow and Deny are scanned linearly: a Policy is meant for a handful of
// operator rules, checked once per tunnel.
type Policy struct {
	allow, deny           []netip.Prefix
	allowPorts, denyPorts []PortRange
}

// ExplicitlyAllowed reports whether an allow rule (-allow) names a: an
// operator's word that overrides other refusals too, such as the proxy's
// refusal of its own host's addresses.
func (p *Policy) ExplicitlyAllowed(a netip.Addr) bool {
	if p == nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, pre := range p.allow {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// builtinOnly is what a nil *Policy checks with.
var builtinOnly Policy

// Default returns the policy with the built-in refusals only.
func Default() *Policy { return &Policy{} }

// New returns the policy for c. It fails on an invalid prefix or a port
// range whose Lo is above Hi. Prefixes are masked (10.1.2.3/8 becomes
// 10.0.0.0/8), and an IPv4-mapped prefix (::ffff:10.0.0.0/104) becomes the
// IPv4 prefix it maps, since Check unmaps addresses.
func New(c Config) (*Policy, error) {
	p := &Policy{
		allowPorts: slices.Clone(c.AllowPorts),
		denyPorts:  slices.Clone(c.DenyPorts),
	}
	var err error
	if p.allow, err = normPrefixes("Allow", c.Allow); err != nil {
		return nil, err
	}
	if p.deny, err = normPrefixes("Deny", c.Deny); err != nil {
		return nil, err
	}
	for _, r := range slices.Concat(c.AllowPorts, c.DenyPorts) {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("policy: port range %d-%d is empty", r.Lo, r.Hi)
		}
	}
	return p, nil
}

func normPrefixes(field string, in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, pre := range in {
		if !pre.IsValid() {
			return nil, fmt.Errorf("policy: %s: invalid prefix %v", field, pre)
		}
		if a := pre.Addr(); a.Is4In6() && pre.Bits() >= 96 {
			pre = netip.PrefixFrom(a.Unmap(), pre.Bits()-96)
		}
		out = append(out, pre.Masked())
	}
	return out, nil
}

// Refusal is the error Check returns for a refused target.
type Refusal struct {
	Addr netip.AddrPort
	// Reason says why, in a few words a proxy can report: "loopback",
	// "private", "link-local", "multicast", "unspecified", "port 0",
	// "port denied", "port not allowed", "denied by rule 10.1.2.0/24", …
	// (builtin.go lists them all); for a NAT64 or 6to4 address refused by
	// its embedded IPv4 address, the IPv4 reason and the embedding:
	// "loopback (IPv4 127.0.0.1 in 6to4 2002::/16)".
	Reason string
	// Rule is the rule that refused: a prefix ("127.0.0.0/8",
	// "10.1.2.0/24"), the DenyPorts range ("8000-9000"), or "" for an
	// invalid address, port 0 and a port outside AllowPorts.
	Rule string
}

func (r *Refusal) Error() string {
	return "policy: target " + r.Addr.String() + " refused: " + r.Reason
}

// Check returns nil if a tunnel may go to ap, else a *Refusal. It does not
// allocate unless it refuses.
func (p *Policy) Check(ap netip.AddrPort) error {
	if p == nil {
		p = &builtinOnly
	}
	a, port := ap.Addr().Unmap().WithZone(""), ap.Port()
	switch {
	case !a.IsValid():
		return &Refusal{ap, "invalid address", ""}
	case port == 0:
		return &Refusal{ap, "port 0", ""}
	}
	for _, r := range p.denyPorts {
		if r.Contains(port) {
			return &Refusal{ap, "port denied", r.String()}
		}
	}
	if len(p.allowPorts) > 0 && !slices.ContainsFunc(p.allowPorts, func(r PortRange) bool { return r.Contains(port) }) {
		return &Refusal{ap, "port not allowed", ""}
	}
	v4, _, embeds := embeddedIPv4(a)
	for _, pre := range p.deny {
		if pre.Contains(a) || (embeds && pre.Contains(v4)) {
			return &Refusal{ap, "denied by rule " + pre.String(), pre.String()}
		}
	}
	for _, pre := range p.allow {
		if pre.Contains(a) {
			return nil
		}
	}
	if r, via := builtinRefusal(a); r != nil {
		reason := r.reason
		if via != "" {
			reason += " (IPv4 " + v4.String() + " in " + via + ")"
		}
		return &Refusal{ap, reason, r.rule}
	}
	return nil
}
