package h3

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A request stream carries one message (RFC 9114 §4.1):
//
//	HEADERS, DATA*, [HEADERS (trailers)], end of stream
//
// with frames of unknown and reserved types allowed anywhere and skipped.
// messageReader follows that sequence; body turns it into the request's
// io.ReadCloser and carries out what each error asks for.

// messageState is where a messageReader is in the message.
type messageState uint8

const (
	stateHead     messageState = iota // before the first HEADERS frame
	stateBody                         // after HEADERS: DATA frames, or trailers
	stateTrailers                     // after the trailers: only the end of the stream
)

func (s messageState) String() string {
	switch s {
	case stateHead:
		return "head"
	case stateBody:
		return "body"
	case stateTrailers:
		return "trailers"
	}
	return fmt.Sprintf("messageState(%d)", uint8(s))
}

// messageReader reads the frames of a request stream. Errors follow
// errors.go: *wire.H3Error for connection errors, *streamError for stream
// errors, errHeaderTooLarge, or the stream's own read errors. It is not
// safe for concurrent use.
type messageReader struct {
	fr             frameReader
	maxHeaderBytes int
	state          messageState
	remaining      uint64 // unread payload bytes of the current DATA frame
	contentLength  int64  // declared Content-Length, -1 if none
	received       int64  // DATA payload bytes read so far
	trailers       http.Header
}

func newMessageReader(r io.Reader, maxHeaderBytes int) messageReader {
	return messageReader{fr: frameReader{r: r}, maxHeaderBytes: maxHeaderBytes, contentLength: -1}
}

// readHead returns the field section of the first HEADERS frame.
func (m *messageReader) readHead() ([]byte, error) {
	typ, length, err := m.fr.next()
	switch {
	case err == io.EOF:
		// RFC 9114 §4.1: a request that ends before a complete message.
		return nil, &streamError{code: wire.ErrCodeRequestIncomplete, reason: "stream ended before HEADERS"}
	case err != nil:
		return nil, err
	case typ != wire.FrameHeaders:
		// RFC 9114 §4.1: "Receipt of an invalid sequence of frames MUST be
		// treated as a connection error of type H3_FRAME_UNEXPECTED".
		return nil, connError(wire.ErrCodeFrameUnexpected, "first frame of a request is %#x, not HEADERS", typ)
	case length > uint64(m.maxHeaderBytes):
		return nil, errHeaderTooLarge
	}
	block, err := m.fr.readPayload(length)
	if err != nil {
		return nil, err
	}
	m.state = stateBody
	return block, nil
}

// read reads DATA payload into p. At the end of the stream it checks the
// Content-Length (RFC 9114 §4.1.2) and returns io.EOF; trailers found on
// the way are left in m.trailers.
func (m *messageReader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for m.remaining == 0 {
		typ, length, err := m.fr.next()
		if err == io.EOF {
			if m.contentLength >= 0 && m.received != m.contentLength {
				return 0, malformed("body of %d bytes, Content-Length %d", m.received, m.contentLength)
			}
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if m.state == stateTrailers {
			return 0, connError(wire.ErrCodeFrameUnexpected, "frame %#x after trailers", typ)
		}
		if typ == wire.FrameHeaders {
			if err := m.readTrailers(length); err != nil {
				return 0, err
			}
			continue
		}
		if m.contentLength >= 0 && length > uint64(m.contentLength-m.received) {
			return 0, malformed("body exceeds Content-Length %d", m.contentLength)
		}
		m.remaining = length
	}
	if uint64(len(p)) > m.remaining {
		p = p[:m.remaining]
	}
	n, err := m.fr.r.Read(p)
	m.remaining -= uint64(n)
	m.received += int64(n)
	if err == io.EOF {
		if m.remaining > 0 {
			return n, truncated(err)
		}
		// The frame is complete; the next call finds the end of the
		// stream between frames.
		err = nil
	}
	return n, err
}

func (m *messageReader) readTrailers(length uint64) error {
	if length > uint64(m.maxHeaderBytes) {
		return &streamError{code: wire.ErrCodeExcessiveLoad, reason: "trailers too large"}
	}
	block, err := m.fr.readPayload(length)
	if err != nil {
		return err
	}
	t, err := decodeTrailers(block, m.maxHeaderBytes)
	if errors.Is(err, errHeaderTooLarge) {
		return &streamError{code: wire.ErrCodeExcessiveLoad, reason: "trailers too large"}
	}
	if err != nil {
		return err
	}
	if m.contentLength >= 0 && m.received != m.contentLength {
		return malformed("body of %d bytes, Content-Length %d", m.received, m.contentLength)
	}
	m.trailers = t
	m.state = stateTrailers
	return nil
}

// body is a request's Body. Read follows the message; an error it meets is
// acted on once (stream reset, connection close, context cancel; see
// reqStream.fail) and then returned by every later Read. Close stops the
// peer from sending (STOP_SENDING with H3_NO_ERROR, RFC 9114 §4.1.2) and
// may be called concurrently with Read, which it unblocks.
type body struct {
	s      *reqStream
	req    *http.Request // for Trailer
	closed atomic.Bool

	mu  sync.Mutex // serializes Read; guards the fields below
	m   messageReader
	err error // sticky
}

// errBodyClosed is returned by Read after Close, as net/http does.
var errBodyClosed = http.ErrBodyReadAfterClose

func (b *body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.m.read(p)
	if b.m.trailers != nil {
		b.setTrailers(b.m.trailers)
		b.m.trailers = nil
	}
	if err != nil {
		b.err = err
		if err != io.EOF {
			b.s.fail(err)
		}
	}
	return n, err
}

// setTrailers stores received trailers in Request.Trailer: into the map
// that the Trailer field announced (net/http's contract), or a new one if
// nothing was announced.
func (b *body) setTrailers(t http.Header) {
	if b.req.Trailer == nil {
		b.req.Trailer = t
		return
	}
	for k, v := range t {
		b.req.Trailer[k] = v
	}
}

func (b *body) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.s.str.CancelRead(quicCode(wire.ErrCodeNoError))
	}
	return nil
}
