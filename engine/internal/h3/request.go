package h3

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Serving one request stream (RFC 9114 §4.1), on its own goroutine:
//
//  1. read the first HEADERS frame and decode it (headers.go); a bad one is
//     answered per errors.go and no handler runs;
//  2. build the *http.Request, whose Body reads the DATA frames (body.go)
//     and whose context ends when the peer resets either direction of the
//     stream, the handler returns, or the connection closes;
//  3. run the handler with a responseWriter (response.go);
//  4. finish the response and close the send side (FIN); stop the peer's
//     sending if the body was not read to its end (H3_NO_ERROR, §4.1.2);
//     a panic resets both directions with H3_INTERNAL_ERROR instead.

// quicCode converts an HTTP/3 error code for quic-go's stream and
// connection calls.
func quicCode(c wire.ErrorCode) quic.StreamErrorCode { return quic.StreamErrorCode(c) }

// Stream is the request stream of a request, for its handler: see
// RequestStream.
type Stream interface {
	// StreamID is the QUIC stream ID; an HTTP Datagram's Quarter Stream ID
	// is StreamID/4 (RFC 9297 §2.1).
	StreamID() quic.StreamID
	// CancelRead asks the peer to stop sending (STOP_SENDING with code).
	CancelRead(code wire.ErrorCode)
	// CancelWrite resets the response direction (RESET_STREAM with code).
	CancelWrite(code wire.ErrorCode)
	// Context is the request's context: done when either side resets the
	// stream (for the peer, either direction), the handler returns, or the
	// connection closes. Its cause is the *quic.StreamError of a reset.
	Context() context.Context
	// Conn is the HTTP/3 connection the stream belongs to, for its peer's
	// SETTINGS (RFC 9297 §2.1.1: no HTTP Datagrams without
	// SETTINGS_H3_DATAGRAM).
	Conn() *Conn
}

type streamKey struct{}

// RequestStream returns the stream of a request that a Conn passed to its
// handler; ok is false for any other request.
func RequestStream(r *http.Request) (s Stream, ok bool) {
	rs, ok := r.Context().Value(streamKey{}).(*reqStream)
	return rs, ok && rs != nil
}

// reqStream is the server side of one request stream.
type reqStream struct {
	conn   *Conn
	str    *quic.Stream
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu          sync.Mutex // guards handlerDone
	handlerDone bool       // once set, onFinalSize starts no probe
}

var _ Stream = (*reqStream)(nil)

func (s *reqStream) StreamID() quic.StreamID         { return s.str.StreamID() }
func (s *reqStream) CancelRead(code wire.ErrorCode)  { s.str.CancelRead(quicCode(code)) }
func (s *reqStream) CancelWrite(code wire.ErrorCode) { s.str.CancelWrite(quicCode(code)) }
func (s *reqStream) Context() context.Context        { return s.ctx }
func (s *reqStream) Conn() *Conn                     { return s.conn }

// reset resets both directions of the stream: a stream error (RFC 9114 §8).
func (s *reqStream) reset(code wire.ErrorCode) {
	s.str.CancelRead(quicCode(code))
	s.str.CancelWrite(quicCode(code))
}

// fail acts on an error met while reading the request (see errors.go).
func (s *reqStream) fail(err error) {
	var se *streamError
	var ce *wire.H3Error
	switch {
	case errors.As(err, &se):
		s.conn.logger.Debug("h3: resetting request stream", "stream", s.str.StreamID(), "error", err)
		s.reset(se.code)
	case errors.As(err, &ce):
		s.conn.closeWithError(ce)
	}
	if rse, ok := remoteStreamError(err); ok && s.cancel != nil {
		s.cancel(rse)
	}
}

// onFinalSize runs on quic-go's event loop once the peer's FIN or
// RESET_STREAM fixed the size of the request. quic-go tells the two apart
// only through Read, and a handler that is not reading the body must still
// see a reset through its context, so this starts routineProbeReset: it
// must not block here.
func (s *reqStream) onFinalSize(int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlerDone {
		return
	}
	// The request goroutine is still counted in wg, so Add cannot race
	// with Serve's Wait reaching zero.
	s.conn.wg.Add(1)
	go s.routineProbeReset()
}

// routineProbeReset checks whether the peer reset the request direction
// and, if so, cancels the request context. A zero-length Read neither
// consumes data nor waits for it: it returns the reset error once the
// reset is in effect, else nothing. It waits only behind a Read the
// handler has in progress, which itself returns at once on a reset.
func (s *reqStream) routineProbeReset() {
	defer s.conn.wg.Done()
	if _, err := s.str.Read(nil); err != nil {
		if rse, ok := remoteStreamError(err); ok {
			s.cancel(rse)
		}
	}
}

// serveRequest serves one request stream; see the top of the file.
func (c *Conn) serveRequest(str *quic.Stream) {
	s := &reqStream{conn: c, str: str}
	m := newMessageReader(str, c.maxHeaderBytes)
	// A stream that stalls before its head is complete is reset when the
	// deadline passes: it holds this goroutine until then.
	str.SetReadDeadline(c.headerDeadline())
	req, err := c.readRequest(&m)
	if err != nil {
		c.rejectRequest(s, err)
		return
	}
	str.SetReadDeadline(time.Time{}) // the body has no deadline: the handler owns it
	req.RemoteAddr = c.remoteAddr
	req.TLS = c.tls
	m.contentLength = req.ContentLength

	ctx, cancel := context.WithCancelCause(c.connCtx)
	s.cancel = cancel
	s.ctx = context.WithValue(ctx, streamKey{}, s)
	// The send side's context ends when the peer sends STOP_SENDING.
	stopWatch := context.AfterFunc(str.Context(), func() { cancel(context.Cause(str.Context())) })
	str.SetReceiveFinalSizeCallback(s.onFinalSize)

	req = req.WithContext(s.ctx)
	req.Body = &body{s: s, req: req, m: m}
	w := newResponseWriter(s, req.Method)

	panicked := c.runHandler(w, req)

	s.mu.Lock()
	s.handlerDone = true
	s.mu.Unlock()
	str.SetReceiveFinalSizeCallback(nil)
	stopWatch()

	switch {
	case panicked:
		s.reset(wire.ErrCodeInternalError)
	case w.writeClosed:
		// CloseWrite already finished the response and sent the FIN.
		str.CancelRead(quicCode(wire.ErrCodeNoError))
	default:
		if err := w.finish(); err != nil {
			c.logger.Debug("h3: response aborted", "stream", str.StreamID(), "error", err)
			s.reset(wire.ErrCodeInternalError)
		} else {
			str.Close()
			// A no-op if the body was read to its end.
			str.CancelRead(quicCode(wire.ErrCodeNoError))
		}
	}
	w.release()
	cancel(context.Canceled)
}

// readRequest reads and decodes the request head.
func (c *Conn) readRequest(m *messageReader) (*http.Request, error) {
	block, err := m.readHead()
	if err != nil {
		return nil, err
	}
	head, err := decodeRequestHead(block, c.maxHeaderBytes)
	if err != nil {
		return nil, err
	}
	return head.newRequest()
}

// rejectRequest answers a request whose head could not be served.
func (c *Conn) rejectRequest(s *reqStream, err error) {
	var se *streamError
	var ce *wire.H3Error
	switch {
	case errors.Is(err, errHeaderTooLarge):
		// RFC 9114 §4.2.2: answer 431. The rest of the request is not
		// needed for that answer, so stop the peer with H3_NO_ERROR and
		// send a complete response (§4.1.2).
		s.str.CancelRead(quicCode(wire.ErrCodeNoError))
		w := newResponseWriter(s, "")
		w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		if w.finish() == nil {
			s.str.Close()
		} else {
			s.str.CancelWrite(quicCode(wire.ErrCodeInternalError))
		}
		w.release()
	case errors.As(err, &se):
		c.logger.Debug("h3: rejecting request", "stream", s.str.StreamID(), "error", err)
		s.reset(se.code)
	case errors.As(err, &ce):
		c.closeWithError(ce)
	default:
		// The peer reset the stream, or the connection is gone: the
		// request is incomplete (RFC 9114 §4.1.1).
		s.reset(wire.ErrCodeRequestIncomplete)
	}
}

// runHandler runs the handler, recovering a panic as net/http does:
// logged with its stack, except http.ErrAbortHandler.
func (c *Conn) runHandler(w http.ResponseWriter, r *http.Request) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			if p == http.ErrAbortHandler {
				return
			}
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.panicLogger.Error("h3: panic serving request", "method", r.Method, "uri", r.RequestURI, "panic", p, "stack", string(buf))
		}
	}()
	c.handler.ServeHTTP(w, r)
	return false
}
