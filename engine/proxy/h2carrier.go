package proxy

import (
	"context"
	"net/http"
	"sync"
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
