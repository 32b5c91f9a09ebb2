package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/2 carrier: extended CONNECT (RFC 8441) with :protocol
// connect-udp or connect-ip, answered 200 with Capsule-Protocol, then
// capsules both ways on the stream (RFC 9297 §3.5). net/http's HTTP/2
// server shows the request as Method CONNECT, Proto "HTTP/2.0", and the
// :protocol pseudo-header in Header[":protocol"].
//
// The stream's capsules go out through an h2Writer: Request.WriteCapsule's
// own capsules and the capsuleQueue's DATAGRAM capsules take its lock one
// whole capsule at a time. HTTP/2 flow control can hold a write for as long
// as the client does not read: only the queue's goroutine (or the request's
// own capsule writer) waits then; replies beyond the queue are dropped as
// return_stream_blocked.

// serveH2Tunnel serves one extended CONNECT on an HTTP/2 connection.
func (s *tcpServer) serveH2Tunnel(t *tcpCarrier, w http.ResponseWriter, r *http.Request) {
	hw := &h2Writer{ResponseWriter: w, rc: http.NewResponseController(w)}
	st := t.newStream(r.Header.Get(":protocol"), hw)
	body := r.Body
	st.cancelRead = func() { body.Close() } // a blocked Read returns
	st.cancelWrite = func() {
		hw.unblock() // RST_STREAM
		body.Close()
	}
	// st.done stops the queue's writer before the handler returns: the
	// ResponseWriter must not be used after that.
	defer st.done()
	s.p.topHandler().ServeHTTP(hw, r.WithContext(context.WithValue(r.Context(), tcpStreamKey{}, st)))
}

// An h2Writer is an HTTP/2 stream's ResponseWriter, its writes serialized.
type h2Writer struct {
	http.ResponseWriter
	rc *http.ResponseController
	mu sync.Mutex // one capsule at a time, and Flush
}

func (w *h2Writer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController.Flush calls.
func (w *h2Writer) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rc.Flush()
}

func (w *h2Writer) Flush()                      { w.FlushError() }
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
func (w *h2Writer) write(b []byte) error        { _, err := w.Write(b); return err }
func (w *h2Writer) flush() error                { return w.FlushError() }

// unblock resets the stream: net/http's HTTP/2 server resets a stream at
// once when its write deadline is set in the past, and a write blocked on
// flow control fails.
func (w *h2Writer) unblock() { w.rc.SetWriteDeadline(time.Unix(1, 0)) }

// An h2TCPStream is a byteStream over a classic CONNECT on HTTP/2 (RFC 9113
// §8.5): the request body is the client's bytes, the response body the
// target's, as DATA frames with no capsules.
//
// net/http's HTTP/2 server cannot end a response (END_STREAM) while its
// handler still reads the request body: the response ends when the
// handler returns, and if the client's side is still open the server then
// resets it with NO_ERROR (RFC 9113 §8.1 allows it after a complete
// response). So the target's FIN ends both directions here: CloseWrite
// stops the client's side (errReadCut), the copy loops return, and the
// handler's return sends END_STREAM. A client that has already sent its
// own FIN sees a clean close both ways; one that wanted to go on sending
// after the target's FIN cannot (HTTP/3 keeps that direction open).
type h2TCPStream struct {
	body io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController
	cut  atomic.Bool // CloseWrite has stopped the client's side
}

func newH2TCPStream(w http.ResponseWriter, r *http.Request) *h2TCPStream {
	return &h2TCPStream{body: r.Body, w: w, rc: http.NewResponseController(w)}
}

// errReadCut: the client's side of a tunnel was stopped because the
// response ended (h2TCPStream.CloseWrite).
var errReadCut = errors.New("masqroute: the response ended, and with it the request body")

func (s *h2TCPStream) Read(b []byte) (int, error) {
	n, err := s.body.Read(b)
	if err != nil && !errors.Is(err, io.EOF) && s.cut.Load() {
		err = errReadCut
	}
	return n, err
}

// Write writes b and flushes it; it blocks while HTTP/2 flow control holds
// the bytes back.
func (s *h2TCPStream) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// CloseWrite stops reading the client's side, so that the handler returns
// and net/http ends the response with END_STREAM (see the type's doc).
func (s *h2TCPStream) CloseWrite() error {
	s.cut.Store(true) // before Close: the Read it unblocks must see it
	return s.body.Close()
}

// Abort resets the stream (a write deadline in the past: net/http sends
// RST_STREAM, INTERNAL_ERROR) and unblocks a Read.
func (s *h2TCPStream) Abort() {
	s.rc.SetWriteDeadline(time.Unix(1, 0))
	s.body.Close()
}

func (s *h2TCPStream) streamID() uint64 { return 0 }
