package h3

import (
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// errCodeQPACKDecompressionFailed is QPACK_DECOMPRESSION_FAILED (RFC 9204
// §6), a connection error: the peer sent a field section that a decoder
// with a zero-capacity dynamic table cannot interpret. wire has only the
// HTTP/3 codes, so it lives here.
const errCodeQPACKDecompressionFailed wire.ErrorCode = 0x200

// How a request stream can fail, and what the connection does about it:
//
//   - *wire.H3Error: a connection error (RFC 9114 §8); the connection is
//     closed with its code.
//   - *streamError: a stream error; the request stream is reset in both
//     directions with its code, the connection lives on.
//   - errHeaderTooLarge: the request's field section is above the limit;
//     the server answers 431 (RFC 9114 §4.2.2).
//   - anything else (a *quic.StreamError from a peer reset, a closed
//     connection, a deadline) comes from QUIC and is passed on unchanged.

// streamError is an HTTP/3 stream error (RFC 9114 §8): the stream is reset
// with code. Malformed messages (RFC 9114 §4.1.2) are H3_MESSAGE_ERROR.
type streamError struct {
	code   wire.ErrorCode
	reason string
}

func (e *streamError) Error() string { return "h3: stream error " + e.code.String() + ": " + e.reason }

func malformed(format string, args ...any) error {
	return &streamError{code: wire.ErrCodeMessageError, reason: fmt.Sprintf(format, args...)}
}

// errHeaderTooLarge: a request's HEADERS frame or decoded field section is
// above Config.MaxHeaderBytes.
var errHeaderTooLarge = errors.New("h3: request header fields too large")

// connError returns a connection error with code.
func connError(code wire.ErrorCode, format string, args ...any) *wire.H3Error {
	return &wire.H3Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// truncated turns the end of a stream inside a frame into the connection
// error RFC 9114 §7.1 asks for ("When a stream terminates cleanly, if the
// last frame on the stream was truncated, this MUST be treated as a
// connection error of type H3_FRAME_ERROR"); other read errors (a reset,
// which may cut a frame anywhere, or a closed connection) pass through.
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return connError(wire.ErrCodeFrameError, "stream ends inside a frame")
	}
	return err
}

// remoteStreamError returns the peer's reset if err carries one.
func remoteStreamError(err error) (*quic.StreamError, bool) {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return se, true
	}
	return nil, false
}
