// Package template matches MASQUE requests against the proxy's URI template
// (RFC 6570) and turns the matched target variables into a checked,
// resolved destination.
//
// The pipeline a proxy runs per request, and what each failure answers
// (see the "bad input" table of the design brief):
//
//	"https://" + r.Host + r.RequestURI
//	  ──Template.Match──►  Values{"target_host": …, "target_port": …}   no match → 404
//	  ──ParseHostPort────► Target{Addr | Name, Port}                    ErrBadHost / ErrBadPort → 400
//	  ──Resolve(pick)────► netip.AddrPort the policy accepted           ErrNoAllowedAddress → 403
//	                                                                    ErrDNS / ErrDNSTimeout → 502
//
// The address Resolve returns is the one the caller's pick function (its
// policy) accepted, so the tunnel connects to exactly the address that was
// checked; nothing resolves the name a second time.
//
// Template syntax and matching are github.com/yosida95/uritemplate's. This
// package adds what a proxy needs around it: an absolute https template
// whose authority is a literal or one variable, strict matching (a match
// must re-expand to the request, so a missing separator, a list value or
// trailing garbage does not match), and limits on what a value may hold.
package template
