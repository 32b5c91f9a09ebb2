package h3

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A response on a request stream (RFC 9114 §4.1) is
//
//	HEADERS (1xx)*, HEADERS (final), DATA*, [HEADERS (trailers)], FIN
//
// responseWriter writes it for a handler:
//
//   - WriteHeader with a 1xx code sends an interim HEADERS frame at once
//     (101 is dropped: HTTP/3 has no protocol switching, RFC 9114 §4.5);
//     the first code >= 200 is final, and later calls are ignored.
//   - The final HEADERS frame goes out with the first body bytes that leave
//     the buffer, at Flush, or when the handler returns; a 2xx answer to a
//     CONNECT sends it at once, since the tunnel starts there.
//   - Body bytes are buffered up to responseBufSize in a pooled buffer and
//     leave as one DATA frame per flush; a larger Write is framed as is.
//     The buffer is held only between a Write and the next flush, so an
//     idle CONNECT tunnel holds none.
//   - If the handler returns before anything was sent and set no
//     Content-Length, the length of its body is sent as Content-Length
//     (never for a 2xx CONNECT, RFC 9110 §9.3.6).
//   - A write error is sticky: a half-written frame cannot be resumed, so
//     the response is then reset when the handler returns.

// responseBufSize is the most body bytes a response buffers before
// framing them.
const responseBufSize = 4 << 10

var responseBufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, responseBufSize)
	return &b
}}

type responseWriter struct {
	s         *reqStream
	isHead    bool
	isConnect bool

	header        http.Header // the handler's
	final         http.Header // snapshot of header at the final WriteHeader
	status        int         // final status; 0 until WriteHeader(>=200)
	headerSent    bool        // the final HEADERS frame was written
	contentLength int64       // declared Content-Length, -1 if none
	written       int64       // body bytes the handler wrote
	buf           *[]byte
	trailers      []string // trailer keys declared by the Trailer field
	scratch       []byte   // frame headers
	err           error    // sticky write error
	writeClosed   bool     // CloseWrite ended the response (FIN sent)
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
	// What http.ResponseController looks for.
	_ interface {
		FlushError() error
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
		EnableFullDuplex() error
	} = (*responseWriter)(nil)
)

func newResponseWriter(s *reqStream, method string) *responseWriter {
	return &responseWriter{
		s:             s,
		isHead:        method == http.MethodHead,
		isConnect:     method == http.MethodConnect,
		header:        make(http.Header),
		contentLength: -1,
	}
}

func (w *responseWriter) Header() http.Header { return w.header }

// Status is the final status written, 0 before WriteHeader.
func (w *responseWriter) Status() int { return w.status }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		w.s.conn.logger.Debug("h3: superfluous WriteHeader", "stream", w.s.str.StreamID(), "code", code)
		return
	}
	// As net/http: a code outside 100-999 is a bug of the handler.
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("h3: invalid WriteHeader code %v", code))
	}
	if code == http.StatusSwitchingProtocols {
		w.s.conn.logger.Debug("h3: dropping 101 response, HTTP/3 has no protocol switching", "stream", w.s.str.StreamID())
		return
	}
	if code < 200 {
		w.writeInterim(code)
		return
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseUint(cl, 10, 63)
		if err != nil {
			w.s.conn.logger.Debug("h3: dropping invalid Content-Length", "value", cl)
			w.header.Del("Content-Length") // before the snapshot
		} else {
			w.contentLength = int64(n)
		}
	}
	// As net/http: later changes to the header map are not sent, except
	// trailers.
	w.final = w.header.Clone()
	if _, ok := w.final["Date"]; !ok { // a nil Date suppresses it, as in net/http
		w.final.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	w.declareTrailers()
	if w.isConnect && code/100 == 2 {
		w.final.Del("Content-Length")
		w.contentLength = -1
		w.err = w.writeFrame(nil)
	}
}

// writeInterim sends a 1xx response with the current header fields, as
// net/http does for 103 Early Hints.
func (w *responseWriter) writeInterim(code int) {
	if w.err != nil {
		return
	}
	w.declareTrailers()
	frame, _ := appendHeadersFrame(nil, code, w.header, w.skipInHeader)
	w.trailers = w.trailers[:0]
	if _, err := w.s.str.Write(frame); err != nil {
		w.err = err
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.writeClosed {
		return 0, ErrWriteClosed
	}
	if w.status == 0 {
		w.sniff(p)
		w.WriteHeader(http.StatusOK)
		if w.err != nil {
			return 0, w.err
		}
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.isHead || len(p) == 0 {
		return len(p), nil
	}
	if w.buf == nil && len(p) < responseBufSize {
		w.buf = responseBufPool.Get().(*[]byte)
	}
	if w.buf != nil && len(*w.buf)+len(p) <= cap(*w.buf) {
		*w.buf = append(*w.buf, p...)
		return len(p), nil
	}
	if err := w.writeFrame(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sniff sets Content-Type from the first body bytes when the handler set
// none, as net/http does (from the first Write only).
func (w *responseWriter) sniff(p []byte) {
	if _, ok := w.header["Content-Type"]; ok || w.isConnect || len(p) == 0 {
		return
	}
	if w.header.Get("Content-Encoding") == "" {
		w.header.Set("Content-Type", http.DetectContentType(p))
	}
}

// writeFrame sends the final HEADERS frame if it is still due, then the
// buffered body and p as one DATA frame, and releases the buffer.
func (w *responseWriter) writeFrame(p []byte) error {
	if w.err != nil {
		return w.err
	}
	hdr := w.scratch[:0]
	if !w.headerSent {
		var dropped []string
		hdr, dropped = appendHeadersFrame(hdr, w.status, w.final, w.skipInHeader)
		if len(dropped) > 0 {
			w.s.conn.logger.Debug("h3: response fields HTTP/3 cannot carry were dropped", "fields", dropped)
		}
		w.headerSent = true
	}
	var buffered []byte
	if w.buf != nil {
		buffered = *w.buf
	}
	if n := len(buffered) + len(p); n > 0 {
		hdr = appendFrameHeader(hdr, wire.FrameData, uint64(n))
	}
	w.scratch = hdr[:0]
	for _, b := range [...][]byte{hdr, buffered, p} {
		if len(b) == 0 {
			continue
		}
		if _, err := w.s.str.Write(b); err != nil {
			w.err = err
			break
		}
	}
	w.releaseBuf()
	return w.err
}

// skipInHeader leaves trailers out of header sections: those the Trailer
// field declares and the http.TrailerPrefix ones.
func (w *responseWriter) skipInHeader(key string) bool {
	return isTrailerKey(key) || slices.Contains(w.trailers, key)
}

// declareTrailers records the trailers the Trailer field declares.
func (w *responseWriter) declareTrailers() {
	w.trailers = w.trailers[:0]
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
			}
		}
	}
}

func isTrailerKey(key string) bool { return strings.HasPrefix(key, http.TrailerPrefix) }

func (w *responseWriter) Flush() {
	if err := w.FlushError(); err != nil {
		w.s.conn.logger.Debug("h3: flush failed", "stream", w.s.str.StreamID(), "error", err)
	}
}

// FlushError sends the header, if due, and the buffered body.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.headerSent && w.buf == nil {
		return w.err
	}
	return w.writeFrame(nil)
}

func (w *responseWriter) SetReadDeadline(t time.Time) error  { return w.s.str.SetReadDeadline(t) }
func (w *responseWriter) SetWriteDeadline(t time.Time) error { return w.s.str.SetWriteDeadline(t) }

// EnableFullDuplex is a no-op: HTTP/3 request and response streams are
// always full duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// ErrWriteClosed is returned by a Write after CloseWrite.
var ErrWriteClosed = errors.New("h3: response closed for writing")

// CloseWrite completes the response now, while the handler goes on reading
// the request body: the header if still due, the buffered body, the
// trailers, then the end of the stream's send side (FIN). A CONNECT tunnel
// uses it when its target closes its side (RFC 9114 §4.4: a TCP FIN is a
// stream FIN). Later Writes fail with ErrWriteClosed, and returning from
// the handler sends nothing more. It is not safe for concurrent use with
// Write, like the rest of the ResponseWriter.
func (w *responseWriter) CloseWrite() error {
	if w.writeClosed {
		return nil
	}
	if err := w.finish(); err != nil {
		return err
	}
	w.writeClosed = true
	return w.s.str.Close()
}

var errShortBody = errors.New("h3: handler wrote less than its Content-Length")

// finish completes the response after the handler returned: the header if
// still due (with a computed Content-Length when possible), the buffered
// body, and the trailers. The caller then closes the stream, or resets it
// if finish fails.
func (w *responseWriter) finish() error {
	if w.err != nil {
		return w.err
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	tunnel := w.isConnect && w.status/100 == 2
	if !w.headerSent && w.contentLength < 0 && bodyAllowed(w.status) && !tunnel && !(w.isHead && w.written == 0) {
		w.contentLength = w.written
		w.final.Set("Content-Length", strconv.FormatInt(w.written, 10))
	}
	if !w.isHead && bodyAllowed(w.status) && w.contentLength >= 0 && w.written < w.contentLength {
		w.err = errShortBody
		return w.err
	}
	if err := w.writeFrame(nil); err != nil {
		return err
	}
	if w.isHead {
		return nil
	}
	return w.writeTrailers()
}

// writeTrailers sends the trailer section, if there is anything in it.
func (w *responseWriter) writeTrailers() error {
	t := make(http.Header)
	for _, k := range w.trailers {
		if vs := w.header[k]; len(vs) > 0 {
			t[k] = vs
		}
	}
	for k, vs := range w.header {
		if isTrailerKey(k) && len(vs) > 0 {
			t[http.CanonicalHeaderKey(strings.TrimPrefix(k, http.TrailerPrefix))] = vs
		}
	}
	if len(t) == 0 {
		return nil
	}
	// RFC 9110 §6.5.1: fields that must not be trailers are dropped.
	frame, _ := appendHeadersFrame(nil, 0, t, func(k string) bool { return !httpguts.ValidTrailerHeader(k) })
	if _, err := w.s.str.Write(frame); err != nil {
		w.err = err
	}
	return w.err
}

// release returns the buffer to the pool if a failed response kept it.
func (w *responseWriter) release() { w.releaseBuf() }

func (w *responseWriter) releaseBuf() {
	if w.buf == nil {
		return
	}
	*w.buf = (*w.buf)[:0]
	responseBufPool.Put(w.buf)
	w.buf = nil
}

// bodyAllowed reports whether a response with status may have content
// (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
