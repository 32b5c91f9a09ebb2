package proxy

import (
	"errors"
	"net/http"

	"github.com/dunglas/httpsfv"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/template"
)

// A StatusError is a refusal the proxy answers with an HTTP status, a
// Proxy-Status header (RFC 9209) and any extra headers. An Authorize hook
// returns one to pick its status (401, 403 or 407) and headers such as
// WWW-Authenticate or Proxy-Authenticate; every error the proxy makes while
// setting a tunnel up is answered as one.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// ProxyError is the RFC 9209 error type, e.g. "dns_error",
	// "destination_ip_prohibited".
	ProxyError string
	// Details is a human-readable note for the Proxy-Status details
	// parameter. It must not leak what the client should not learn.
	Details string
	// Header holds extra response headers.
	Header http.Header
	// Err is the cause, for logs and errors.Is; it is never sent.
	Err error
}

func (e *StatusError) Error() string {
	msg := http.StatusText(e.Status)
	if e.Details != "" {
		msg += ": " + e.Details
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *StatusError) Unwrap() error { return e.Err }

// Proxy-Status error types (RFC 9209 §2.3) masqroute uses.
const (
	proxyErrDNSError             = "dns_error"
	proxyErrDNSTimeout           = "dns_timeout"
	proxyErrDestUnavailable      = "destination_unavailable"
	proxyErrDestIPProhibited     = "destination_ip_prohibited"
	proxyErrConnectionTimeout    = "connection_timeout"
	proxyErrHTTPRequestDenied    = "http_request_denied"
	proxyErrHTTPRequestError     = "http_request_error"
	proxyErrInternal             = "proxy_internal_error"
	proxyErrConfigurationError   = "proxy_configuration_error"
	proxyErrConnectionTerminated = "connection_terminated"
)

// proxyStatus formats a Proxy-Status field value for proxy name.
func proxyStatus(name, errType, details string) string {
	item := httpsfv.NewItem(httpsfv.Token(name))
	if errType != "" {
		item.Params.Add("error", httpsfv.Token(errType))
	}
	if details != "" {
		item.Params.Add("details", details)
	}
	v, err := httpsfv.Marshal(httpsfv.List{item})
	if err != nil { // a name or details that is not a valid sf-token / sf-string
		return name
	}
	return v
}

// writeStatus answers a request with e.
func writeStatus(w http.ResponseWriter, name string, e *StatusError) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = append(h[k], vs...)
	}
	h.Set("Proxy-Status", proxyStatus(name, e.ProxyError, e.Details))
	w.WriteHeader(e.Status)
}

// dnsRefusal counts a failed target lookup and returns its answer: 502
// with dns_timeout when the lookup ran past Config.ResolveTimeout, else 502
// with dns_error. err is a template.Lookup or template.Resolve error.
func (p *Proxy) dnsRefusal(err error) *StatusError {
	p.counters.tunnelFailDNS.Add(1)
	if errors.Is(err, template.ErrDNSTimeout) {
		return &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDNSTimeout,
			Details: "DNS lookup timed out", Err: err}
	}
	return &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrDNSError,
		Details: "DNS lookup failed", Err: err}
}

// asStatusError maps any error from setting a tunnel up to its response.
func asStatusError(err error) *StatusError {
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se
	}
	switch {
	case errors.Is(err, engine.ErrTooManyTunnels):
		return &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrHTTPRequestDenied,
			Details: "tunnel limit reached", Err: err}
	case errors.Is(err, engine.ErrRouterClosed):
		return &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrConnectionTerminated,
			Details: "connection closing", Err: err}
	case errors.Is(err, engine.ErrUnknownKind):
		return &StatusError{Status: http.StatusNotImplemented, ProxyError: proxyErrHTTPRequestError,
			Details: "unsupported protocol", Err: err}
	case errors.Is(err, engine.ErrStreamExists):
		return &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
			Details: "stream already has a tunnel", Err: err}
	case errors.Is(err, engine.ErrInitTimeout):
		return &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrConnectionTimeout,
			Details: "tunnel setup timed out", Err: err}
	}
	return &StatusError{Status: http.StatusBadGateway, ProxyError: proxyErrInternal,
		Details: "tunnel setup failed", Err: err}
}
