package h3

import (
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/quic-go/qpack"
	"golang.org/x/net/http/httpguts"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Field sections (RFC 9114 §4.2, §4.3) are QPACK-encoded (RFC 9204). This
// server advertises a zero-capacity dynamic table (it sends no
// SETTINGS_QPACK_MAX_TABLE_CAPACITY), so every field line it decodes refers
// to the static table or is a literal; qpack.Decoder rejects anything else.

// fieldLineOverhead is added to each field's name and value length when a
// field section's size is computed (RFC 9114 §4.2.2).
const fieldLineOverhead = 32

// connectionSpecific lists the fields that RFC 9114 §4.2 forbids in
// HTTP/3 messages ("connection-specific header fields"); TE is allowed
// with the value "trailers" only.
var connectionSpecific = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"transfer-encoding": true,
	"upgrade":           true,
}

// requestHead holds the pseudo-header fields of a request (RFC 9114
// §4.3.1, RFC 9220 §3) and its regular fields.
type requestHead struct {
	method, scheme, authority, path, protocol string
	has                                       uint8 // pseudo* bits: which pseudo-headers were present
	header                                    http.Header
	contentLength                             int64 // -1: no Content-Length
}

const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoProtocol
)

// decodeFields decodes a QPACK field section, bounded to maxSize bytes of
// decoded size (RFC 9114 §4.2.2), calling fn for each field. It checks what
// holds for every field line (RFC 9114 §4.2): a lowercase, valid name, a
// valid value, no connection-specific field. Errors: a *wire.H3Error
// QPACK_DECOMPRESSION_FAILED, errHeaderTooLarge, a malformed stream error,
// or fn's.
func decodeFields(block []byte, maxSize int, fn func(name, value string) error) error {
	decode := qpack.NewDecoder().Decode(block)
	size := 0
	for {
		f, err := decode()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return connError(errCodeQPACKDecompressionFailed, "QPACK: %v", err)
		}
		size += len(f.Name) + len(f.Value) + fieldLineOverhead
		if size > maxSize {
			return errHeaderTooLarge
		}
		name := f.Name
		if f.IsPseudo() {
			name = name[1:]
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return malformed("invalid field name %q", f.Name)
		}
		if hasUpper(name) {
			return malformed("field name %q is not lowercase", f.Name)
		}
		if !httpguts.ValidHeaderFieldValue(f.Value) {
			return malformed("invalid value for field %q", f.Name)
		}
		if !f.IsPseudo() {
			if connectionSpecific[f.Name] {
				return malformed("connection-specific field %q", f.Name)
			}
			if f.Name == "te" && f.Value != "trailers" {
				return malformed("TE field with value %q", f.Value)
			}
		}
		if err := fn(f.Name, f.Value); err != nil {
			return err
		}
	}
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// decodeRequestHead decodes and checks a request's field section.
func decodeRequestHead(block []byte, maxSize int) (*requestHead, error) {
	h := &requestHead{header: make(http.Header), contentLength: -1}
	regular := false
	err := decodeFields(block, maxSize, func(name, value string) error {
		if name[0] != ':' {
			regular = true
			if name == "content-length" {
				return h.setContentLength(value)
			}
			h.header.Add(name, value) // canonicalizes the key
			return nil
		}
		// RFC 9114 §4.3: pseudo-header fields come first, once each.
		if regular {
			return malformed("pseudo-header %s after a regular field", name)
		}
		var bit uint8
		var dst *string
		switch name {
		case ":method":
			bit, dst = pseudoMethod, &h.method
		case ":scheme":
			bit, dst = pseudoScheme, &h.scheme
		case ":authority":
			bit, dst = pseudoAuthority, &h.authority
		case ":path":
			bit, dst = pseudoPath, &h.path
		case ":protocol":
			bit, dst = pseudoProtocol, &h.protocol
		default: // :status, or unknown (RFC 9114 §4.3)
			return malformed("pseudo-header %s in a request", name)
		}
		if h.has&bit != 0 {
			return malformed("repeated pseudo-header %s", name)
		}
		h.has |= bit
		*dst = value
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, h.check()
}

// setContentLength records a Content-Length value; repeats must agree
// (RFC 9110 §8.6), and the value must be a decimal number.
func (h *requestHead) setContentLength(v string) error {
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return malformed("invalid Content-Length %q", v)
	}
	if h.contentLength >= 0 && h.contentLength != int64(n) {
		return malformed("conflicting Content-Length values")
	}
	h.contentLength = int64(n)
	return nil
}

// check applies the request pseudo-header rules of RFC 9114 §4.3.1 and
// §4.4 (CONNECT) and RFC 9220 §3 (extended CONNECT), and resolves the
// authority from :authority or Host.
func (h *requestHead) check() error {
	if h.has&pseudoMethod == 0 || !httpguts.ValidHeaderFieldName(h.method) {
		return malformed("missing or invalid :method %q", h.method)
	}
	hosts := h.header["Host"]
	if len(hosts) > 1 {
		return malformed("repeated Host field")
	}
	if len(hosts) == 1 {
		if h.has&pseudoAuthority != 0 && hosts[0] != h.authority {
			return malformed(":authority and Host differ")
		}
		if h.has&pseudoAuthority == 0 && h.method != http.MethodConnect {
			h.authority, h.has = hosts[0], h.has|pseudoAuthority
		}
		delete(h.header, "Host") // net/http servers carry it in Request.Host only
	}
	if h.has&pseudoAuthority != 0 && !httpguts.ValidHostHeader(h.authority) {
		return malformed("invalid :authority %q", h.authority)
	}

	switch {
	case h.method == http.MethodConnect && h.has&pseudoProtocol != 0:
		// Extended CONNECT (RFC 9220 §3, RFC 8441 §4): all of them.
		if !httpguts.ValidHeaderFieldName(h.protocol) {
			return malformed("invalid :protocol %q", h.protocol)
		}
		if h.has&(pseudoScheme|pseudoPath|pseudoAuthority) != pseudoScheme|pseudoPath|pseudoAuthority ||
			h.scheme == "" || h.authority == "" {
			return malformed("extended CONNECT without :scheme, :path or :authority")
		}
		if !strings.HasPrefix(h.path, "/") {
			return malformed("invalid :path %q", h.path)
		}
	case h.method == http.MethodConnect:
		// CONNECT (RFC 9114 §4.4): :authority only.
		if h.has&(pseudoScheme|pseudoPath) != 0 || h.authority == "" {
			return malformed("CONNECT needs :authority and no :scheme or :path")
		}
	default:
		if h.has&pseudoProtocol != 0 {
			return malformed(":protocol with method %s", h.method)
		}
		if h.has&pseudoScheme == 0 || h.scheme == "" || h.has&pseudoPath == 0 || h.path == "" {
			return malformed("missing :scheme or :path")
		}
		scheme := strings.ToLower(h.scheme)
		if scheme == "http" || scheme == "https" {
			if h.authority == "" {
				return malformed("%s request without :authority or Host", scheme)
			}
			if strings.Contains(h.authority, "@") {
				return malformed(":authority with userinfo")
			}
			if !strings.HasPrefix(h.path, "/") && (h.path != "*" || h.method != http.MethodOptions) {
				return malformed("invalid :path %q", h.path)
			}
		}
	}
	return nil
}

// newRequest builds the *http.Request a net/http handler expects from a
// checked head. As net/http's HTTP/1 and HTTP/2 servers do, the URL comes
// from :path alone (origin form; no scheme or host), and the authority is
// in Host. For extended CONNECT, Proto is the :protocol value (as quic-go's
// server has done since v0.63) and RequestURI is :path; for plain CONNECT,
// URL.Host and RequestURI are the authority.
func (h *requestHead) newRequest() (*http.Request, error) {
	r := &http.Request{
		Method:        h.method,
		Proto:         "HTTP/3.0",
		ProtoMajor:    3,
		Header:        h.header,
		ContentLength: h.contentLength,
		Host:          h.authority,
		RequestURI:    h.path,
	}
	switch {
	case h.method == http.MethodConnect && h.has&pseudoProtocol != 0:
		r.Proto = h.protocol
	case h.method == http.MethodConnect:
		r.URL = &url.URL{Host: h.authority}
		r.RequestURI = h.authority
	}
	if r.URL == nil {
		u, err := url.ParseRequestURI(h.path)
		if err != nil {
			return nil, malformed("invalid :path %q", h.path)
		}
		r.URL = u
	}
	if h.contentLength >= 0 {
		h.header.Set("Content-Length", strconv.FormatInt(h.contentLength, 10))
	}
	// RFC 9114 §4.2.1 lets a client split Cookie; join it back as
	// HTTP/1.1 and net/http's HTTP/2 server present it.
	if c := h.header["Cookie"]; len(c) > 1 {
		h.header.Set("Cookie", strings.Join(c, "; "))
	}
	r.Trailer = declaredTrailers(h.header)
	return r, nil
}

// declaredTrailers returns the trailer fields the Trailer field announces,
// with nil values, and removes Trailer from h, as net/http does. It returns
// nil when nothing is announced.
func declaredTrailers(h http.Header) http.Header {
	vals, ok := h["Trailer"]
	if !ok {
		return nil
	}
	t := make(http.Header)
	for _, v := range vals {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				t[http.CanonicalHeaderKey(k)] = nil
			}
		}
	}
	delete(h, "Trailer")
	return t
}

// decodeTrailers decodes a trailer section (RFC 9114 §4.1): regular fields
// only, and none that RFC 9110 §6.5.1 forbids in trailers.
func decodeTrailers(block []byte, maxSize int) (http.Header, error) {
	t := make(http.Header)
	err := decodeFields(block, maxSize, func(name, value string) error {
		if name[0] == ':' {
			return malformed("pseudo-header %s in trailers", name)
		}
		if !httpguts.ValidTrailerHeader(name) {
			return malformed("field %q not allowed in trailers", name)
		}
		t.Add(name, value)
		return nil
	})
	return t, err
}

// appendHeadersFrame appends a HEADERS frame carrying status (if non-zero)
// and the fields of h, skipping those in skip and those HTTP/3 cannot
// carry (invalid names or values, connection-specific fields, RFC 9114
// §4.2); dropped reports the names it left out.
func appendHeadersFrame(b []byte, status int, h http.Header, skip func(key string) bool) (_ []byte, dropped []string) {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	// Writes to a bytes.Buffer cannot fail.
	if status != 0 {
		_ = enc.WriteField(qpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	}
	for k, vs := range h {
		if skip != nil && skip(k) {
			continue
		}
		name := strings.ToLower(k)
		if !httpguts.ValidHeaderFieldName(k) || connectionSpecific[name] || (name == "te" && !allTrailers(vs)) {
			dropped = append(dropped, k)
			continue
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				dropped = append(dropped, k)
				continue
			}
			_ = enc.WriteField(qpack.HeaderField{Name: name, Value: v})
		}
	}
	b = appendFrameHeader(b, wire.FrameHeaders, uint64(block.Len()))
	return append(b, block.Bytes()...), dropped
}

func allTrailers(vs []string) bool {
	for _, v := range vs {
		if v != "trailers" {
			return false
		}
	}
	return true
}
