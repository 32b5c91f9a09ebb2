package template

import "errors"

// Errors returned by this package. Compare with errors.Is.
var (
	// ErrTemplate: Parse refused the template.
	ErrTemplate = errors.New("masqroute/template: bad URI template")
	// ErrBadValue: Expand was given a value a request could not carry
	// (see Template.Match for the rules), or lacked a required variable.
	ErrBadValue = errors.New("masqroute/template: bad template variable value")
	// ErrBadHost: the target host is empty, malformed, an IPv6 literal with
	// a zone, or a name whose last label is numeric without being a valid
	// IPv4 number. A proxy answers 400.
	ErrBadHost = errors.New("masqroute/template: bad target host")
	// ErrBadPort: the target port is empty, not decimal digits, has a sign
	// or a leading zero, or is outside 1..65535. A proxy answers 400.
	ErrBadPort = errors.New("masqroute/template: bad target port")
	// ErrDNS wraps every lookup failure, ErrDNSTimeout included. A proxy
	// answers 502.
	ErrDNS = errors.New("masqroute/template: DNS lookup failed")
	// ErrDNSTimeout: the lookup ran past its timeout. errors.Is(err, ErrDNS)
	// also holds.
	ErrDNSTimeout error = errWrap{ErrDNS, "timed out"}
	// ErrNoAllowedAddress: the name resolved, but the pick function refused
	// every address. A proxy answers 403 with the first refusal's reason.
	ErrNoAllowedAddress = errors.New("masqroute/template: no resolved address is allowed")
)

// errWrap is a sentinel that is also its parent sentinel under errors.Is.
type errWrap struct {
	parent error
	what   string
}

func (e errWrap) Error() string { return e.parent.Error() + ": " + e.what }
func (e errWrap) Unwrap() error { return e.parent }
