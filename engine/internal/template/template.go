package template

import (
	"fmt"
	"slices"
	"strings"

	"github.com/yosida95/uritemplate/v3"
)

// DefaultUDP is the CONNECT-UDP URI template of RFC 9298 §3, with the
// proxy's own authority: "{authority}" matches whatever host and port the
// client reached the proxy under. The proxy (proxy.DefaultUDPTemplate) and
// the client default to it.
const DefaultUDP = "https://{authority}/.well-known/masque/udp/{target_host}/{target_port}/"

// MaxExpansion bounds how much longer than its template a request URI may
// be: Match refuses longer ones without running the matcher. Every MASQUE
// value is short (a 253-byte DNS name fully percent-encoded is 759 bytes,
// plus a port; an authority is at most 259), and the library's matcher
// allocates for every input byte, so an unbounded URI would let one
// request cost the proxy milliseconds.
const MaxExpansion = 1024

// Values holds a match's variables, percent-decoded. A variable the request
// left out is absent.
type Values map[string]string

// Template is a parsed proxy URI template. It is immutable and safe for
// concurrent use.
//
// A template is an absolute https URI template whose authority is either a
// literal host[:port] (a request matches when its authority is the same,
// host compared case-insensitively and port 443 equal to no port) or a
// single variable such as "{authority}" standing for the whole authority
// (a request reaching the proxy under any well-formed authority matches,
// and the variable's value is that authority). The path and query are
// matched by github.com/yosida95/uritemplate, with these restrictions:
//
//   - operators "+" and "#" and modifiers ":n" and "*" are refused at Parse,
//     so no value can hold a raw "/", "?", "&" or "," and every value is one
//     string;
//   - a match must re-expand to the request (after percent-encoding
//     normalization), so a missing "&" between query variables, a list
//     value, an empty query, or trailing text does not match;
//   - values are percent-decoded and must be visible ASCII and not "." or
//     ".." (see Match).
type Template struct {
	raw          string
	authVar      string // variable standing for the whole authority, or ""
	authority    string // canonAuthority of the literal authority
	litAuthority string // the literal authority as written, for Expand
	path         *uritemplate.Template
	names        []string // every variable, authVar included, in order
	required     []string
}

// Parse parses an absolute https URI template. required names variables a
// match must carry with a non-empty value, and Parse fails if the template
// lacks one: CONNECT-UDP passes "target_host", "target_port"; CONNECT-IP,
// whose "target" and "ipproto" are optional and whose template may have no
// variables at all, passes none. Other variables are optional.
//
// Examples: "https://proxy.example:4433/.well-known/masque/udp/{target_host}/{target_port}/",
// "https://{authority}/.well-known/masque/udp/{target_host}/{target_port}/",
// "https://proxy.example/masque{?target_host,target_port}",
// "https://proxy.example/masque?h={target_host}&p={target_port}".
func Parse(raw string, required ...string) (*Template, error) {
	authority, rest, ok := splitURI(raw)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not an absolute https URI template", ErrTemplate, raw)
	}
	t := &Template{raw: raw, required: slices.Clone(required)}
	if strings.ContainsAny(authority, "{}") {
		exprs, err := scanExprs(authority)
		if err != nil || len(exprs) != 1 || exprs[0].op != 0 || len(exprs[0].names) != 1 ||
			authority != "{"+exprs[0].names[0]+"}" {
			return nil, fmt.Errorf("%w: authority %q must be a literal host[:port] or one variable such as {authority}",
				ErrTemplate, authority)
		}
		t.authVar = exprs[0].names[0]
		t.names = append(t.names, t.authVar)
	} else {
		canon, ok := canonAuthority(authority)
		if !ok {
			return nil, fmt.Errorf("%w: authority %q is not host[:port]", ErrTemplate, authority)
		}
		t.authority, t.litAuthority = canon, authority
	}
	if !strings.HasPrefix(rest, "/") {
		return nil, fmt.Errorf("%w: the path of %q must start with '/'", ErrTemplate, raw)
	}
	exprs, err := scanExprs(rest)
	if err != nil {
		return nil, err
	}
	if strings.IndexByte(rest, '#') >= 0 { // scanExprs refused "{#…}": this is a fragment
		return nil, fmt.Errorf("%w: %q has a fragment", ErrTemplate, raw)
	}
	for _, e := range exprs {
		for _, name := range e.names {
			if slices.Contains(t.names, name) {
				return nil, fmt.Errorf("%w: variable %q appears twice", ErrTemplate, name)
			}
			t.names = append(t.names, name)
		}
	}
	norm, ok := normalizePct(rest)
	if !ok {
		return nil, fmt.Errorf("%w: malformed percent-encoding in %q", ErrTemplate, raw)
	}
	if t.path, err = uritemplate.New(norm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	for _, name := range required {
		if !slices.Contains(t.names, name) {
			return nil, fmt.Errorf("%w: %q lacks the required variable %q", ErrTemplate, raw, name)
		}
	}
	return t, nil
}

// Raw returns the template as given to Parse.
func (t *Template) Raw() string { return t.raw }

// Varnames returns the template's variables in order of appearance.
func (t *Template) Varnames() []string { return slices.Clone(t.names) }

// MatchAnyAuthority reports whether the template's authority is a variable,
// so that Match accepts any well-formed authority the proxy is reached
// under.
func (t *Template) MatchAnyAuthority() bool { return t.authVar != "" }

// Match matches a request URI, built by the caller as
// "https://" + r.Host + r.RequestURI, and returns its variables,
// percent-decoded ("2001%3Adb8%3A%3A1" gives "2001:db8::1").
//
// Matching is strict. It fails when the authority differs (see Template),
// a required variable is missing or empty, a path segment is missing or
// extra, text trails the template, the request is longer than the
// template by more than MaxExpansion bytes, a percent sign is not followed by two hex digits, or a
// decoded value holds anything but visible ASCII (0x21-0x7E) or is a
// dot-segment ("." or ".."). Percent-encoding is normalized first (RFC 3986
// §6.2.2), so "%7e" and "~" are the same but "%2F" stays data: a value
// such as "..%2F..%2Fadmin" stays within its segment and decodes to
// "../../admin", which ParseHostPort then refuses. A raw "*" is read as
// "%2A", because RFC 9484 §4.6 sends CONNECT-IP's wildcard raw
// (".../ip/*/*/"); the value is "*". An IPv6 literal must
// arrive with its colons percent-encoded, as RFC 9298 §2 requires; a raw
// ":" does not match a simple variable.
func (t *Template) Match(uri string) (Values, bool) {
	if len(uri) > len(t.raw)+MaxExpansion {
		return nil, false
	}
	authority, rest, ok := splitURI(uri)
	if !ok || !strings.HasPrefix(rest, "/") {
		return nil, false
	}
	canon, ok := canonAuthority(authority)
	if !ok || (t.authVar == "" && canon != t.authority) {
		return nil, false
	}
	norm, ok := normalizePct(rest)
	if !ok {
		return nil, false
	}
	m := t.path.Match(norm)
	if m == nil {
		return nil, false
	}
	vals := make(Values, len(m)+1)
	for name, v := range m {
		if v.T != uritemplate.ValueTypeString || !validValue(v.String()) {
			return nil, false
		}
		vals[name] = v.String()
	}
	if t.authVar != "" {
		vals[t.authVar] = authority
	}
	for _, name := range t.required {
		if vals[name] == "" {
			return nil, false
		}
	}
	// The library's matcher is lenient (it accepts "?a=1b=2" for "{?a,b}"
	// and "?" for an empty "{?a}"); re-expanding is the strict check.
	if again, err := t.path.Expand(m); err != nil || again != norm {
		return nil, false
	}
	return vals, true
}

// Expand builds the request URI for vars, as a client does. Values are
// percent-encoded as RFC 6570 simple expansion does (an IPv6 literal
// "2001:db8::1" becomes "2001%3Adb8%3A%3A1", as RFC 9298 §2 requires). The
// authority variable, if the template has one, is written as given and
// must be host[:port]. Names the template lacks are ignored, as RFC 6570
// ignores them; a required variable that is missing or empty, a value
// Match would refuse, or a result longer than Match accepts is an
// ErrBadValue.
func (t *Template) Expand(vars map[string]string) (string, error) {
	lv := make(uritemplate.Values, len(vars))
	for _, name := range t.names {
		v, ok := vars[name]
		if !ok || name == t.authVar {
			continue
		}
		if !validValue(v) {
			return "", fmt.Errorf("%w: %s=%q", ErrBadValue, name, v)
		}
		lv[name] = uritemplate.String(v)
	}
	for _, name := range t.required {
		if vars[name] == "" {
			return "", fmt.Errorf("%w: required variable %q is missing", ErrBadValue, name)
		}
	}
	authority := t.litAuthority
	if t.authVar != "" {
		authority = vars[t.authVar]
		if _, ok := canonAuthority(authority); !ok {
			return "", fmt.Errorf("%w: %s=%q is not host[:port]", ErrBadValue, t.authVar, authority)
		}
	}
	path, err := t.path.Expand(lv)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	uri := "https://" + authority + path
	if len(uri) > len(t.raw)+MaxExpansion {
		return "", fmt.Errorf("%w: expansion longer than the template by more than %d bytes", ErrBadValue, MaxExpansion)
	}
	return uri, nil
}
