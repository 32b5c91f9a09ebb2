package wire

import (
	"errors"
	"fmt"
)

// Errors of the datagram and capsule parsers. They are sentinels: compare
// with errors.Is. ParseDatagram and ParseContextID return them unwrapped, so
// the per-datagram error path does not allocate.
var (
	// ErrTruncated: the input ends inside a variable-length integer (or is
	// empty where one is required). For the Quarter Stream ID of an HTTP/3
	// Datagram the caller closes the connection with H3_DATAGRAM_ERROR
	// (RFC 9297 §2.1); for a Context ID it drops the datagram (RFC 9298 §4).
	ErrTruncated = errors.New("wire: truncated varint")
	// ErrQuarterStreamIDTooLarge: the Quarter Stream ID is above 2^60-1. The
	// caller closes the connection with H3_DATAGRAM_ERROR (RFC 9297 §2.1).
	ErrQuarterStreamIDTooLarge = errors.New("wire: quarter stream ID above 2^60-1")
	// ErrCapsuleTooLarge: a wanted capsule's Length exceeds the reader's
	// maximum value size, a limit of masqroute's own that protects its
	// memory. The capsule was not consumed; the caller resets the stream
	// with H3_MESSAGE_ERROR, as for a malformed capsule.
	ErrCapsuleTooLarge = errors.New("wire: capsule too large")
	// ErrMalformedCapsule: the stream ended inside a capsule (RFC 9297 §3.3:
	// a capsule truncated by the end of the stream is malformed). The error
	// wraps the cause, io.ErrUnexpectedEOF.
	ErrMalformedCapsule = errors.New("wire: malformed capsule")
)

// ErrorCode is an HTTP/3 error code, sent in CONNECTION_CLOSE or
// RESET_STREAM (RFC 9114 §8.1).
type ErrorCode uint64

// HTTP/3 error codes: RFC 9114 §8.1, and H3_DATAGRAM_ERROR from RFC 9297 §5.2.
const (
	ErrCodeNoError              ErrorCode = 0x100 // H3_NO_ERROR
	ErrCodeGeneralProtocolError ErrorCode = 0x101 // H3_GENERAL_PROTOCOL_ERROR
	ErrCodeInternalError        ErrorCode = 0x102 // H3_INTERNAL_ERROR
	ErrCodeStreamCreationError  ErrorCode = 0x103 // H3_STREAM_CREATION_ERROR
	ErrCodeClosedCriticalStream ErrorCode = 0x104 // H3_CLOSED_CRITICAL_STREAM
	ErrCodeFrameUnexpected      ErrorCode = 0x105 // H3_FRAME_UNEXPECTED
	ErrCodeFrameError           ErrorCode = 0x106 // H3_FRAME_ERROR
	ErrCodeExcessiveLoad        ErrorCode = 0x107 // H3_EXCESSIVE_LOAD
	ErrCodeIDError              ErrorCode = 0x108 // H3_ID_ERROR
	ErrCodeSettingsError        ErrorCode = 0x109 // H3_SETTINGS_ERROR
	ErrCodeMissingSettings      ErrorCode = 0x10a // H3_MISSING_SETTINGS
	ErrCodeRequestRejected      ErrorCode = 0x10b // H3_REQUEST_REJECTED
	ErrCodeRequestCancelled     ErrorCode = 0x10c // H3_REQUEST_CANCELLED
	ErrCodeRequestIncomplete    ErrorCode = 0x10d // H3_REQUEST_INCOMPLETE
	ErrCodeMessageError         ErrorCode = 0x10e // H3_MESSAGE_ERROR
	ErrCodeConnectError         ErrorCode = 0x10f // H3_CONNECT_ERROR
	ErrCodeVersionFallback      ErrorCode = 0x110 // H3_VERSION_FALLBACK
	ErrCodeDatagramError        ErrorCode = 0x33  // H3_DATAGRAM_ERROR
)

var errorCodeNames = map[ErrorCode]string{
	ErrCodeNoError:              "H3_NO_ERROR",
	ErrCodeGeneralProtocolError: "H3_GENERAL_PROTOCOL_ERROR",
	ErrCodeInternalError:        "H3_INTERNAL_ERROR",
	ErrCodeStreamCreationError:  "H3_STREAM_CREATION_ERROR",
	ErrCodeClosedCriticalStream: "H3_CLOSED_CRITICAL_STREAM",
	ErrCodeFrameUnexpected:      "H3_FRAME_UNEXPECTED",
	ErrCodeFrameError:           "H3_FRAME_ERROR",
	ErrCodeExcessiveLoad:        "H3_EXCESSIVE_LOAD",
	ErrCodeIDError:              "H3_ID_ERROR",
	ErrCodeSettingsError:        "H3_SETTINGS_ERROR",
	ErrCodeMissingSettings:      "H3_MISSING_SETTINGS",
	ErrCodeRequestRejected:      "H3_REQUEST_REJECTED",
	ErrCodeRequestCancelled:     "H3_REQUEST_CANCELLED",
	ErrCodeRequestIncomplete:    "H3_REQUEST_INCOMPLETE",
	ErrCodeMessageError:         "H3_MESSAGE_ERROR",
	ErrCodeConnectError:         "H3_CONNECT_ERROR",
	ErrCodeVersionFallback:      "H3_VERSION_FALLBACK",
	ErrCodeDatagramError:        "H3_DATAGRAM_ERROR",
}

// String returns the code's name from RFC 9114 §8.1 (or RFC 9297 §5.2);
// a reserved code (RFC 9114 §8.1: 0x1f*N+0x21) or an unknown one is printed
// in hex.
func (c ErrorCode) String() string {
	if name, ok := errorCodeNames[c]; ok {
		return name
	}
	if IsReserved(uint64(c)) {
		return fmt.Sprintf("H3_RESERVED(%#x)", uint64(c))
	}
	return fmt.Sprintf("H3_UNKNOWN(%#x)", uint64(c))
}

// H3Error is an HTTP/3 connection error found while parsing: the caller
// closes the connection with Code (RFC 9114 §8). Find it with errors.As, or
// with CodeOf.
type H3Error struct {
	Code ErrorCode
	// Reason says which rule was broken; it is for logs, and may be sent as
	// the CONNECTION_CLOSE reason phrase.
	Reason string
	// Err is the underlying cause, if any (a read error, for
	// H3_CLOSED_CRITICAL_STREAM). Unwrap returns it.
	Err error
}

func (e *H3Error) Error() string {
	if e.Err != nil {
		return "h3: " + e.Code.String() + ": " + e.Reason + ": " + e.Err.Error()
	}
	return "h3: " + e.Code.String() + ": " + e.Reason
}

func (e *H3Error) Unwrap() error { return e.Err }

// CodeOf returns the code of the first *H3Error in err's chain.
func CodeOf(err error) (ErrorCode, bool) {
	var h *H3Error
	if errors.As(err, &h) {
		return h.Code, true
	}
	return 0, false
}

func h3Err(code ErrorCode, reason string) *H3Error {
	return &H3Error{Code: code, Reason: reason}
}
