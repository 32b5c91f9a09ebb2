package wire

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestErrorCodeValues(t *testing.T) {
	// RFC 9114 §8.1 and RFC 9297 §5.2.
	want := map[ErrorCode]string{
		0x100: "H3_NO_ERROR",
		0x101: "H3_GENERAL_PROTOCOL_ERROR",
		0x102: "H3_INTERNAL_ERROR",
		0x103: "H3_STREAM_CREATION_ERROR",
		0x104: "H3_CLOSED_CRITICAL_STREAM",
		0x105: "H3_FRAME_UNEXPECTED",
		0x106: "H3_FRAME_ERROR",
		0x107: "H3_EXCESSIVE_LOAD",
		0x108: "H3_ID_ERROR",
		0x109: "H3_SETTINGS_ERROR",
		0x10a: "H3_MISSING_SETTINGS",
		0x10b: "H3_REQUEST_REJECTED",
		0x10c: "H3_REQUEST_CANCELLED",
		0x10d: "H3_REQUEST_INCOMPLETE",
		0x10e: "H3_MESSAGE_ERROR",
		0x10f: "H3_CONNECT_ERROR",
		0x110: "H3_VERSION_FALLBACK",
		0x33:  "H3_DATAGRAM_ERROR",
	}
	require.Len(t, errorCodeNames, len(want))
	for code, name := range want {
		require.Equal(t, name, code.String())
	}
	require.Equal(t, "H3_RESERVED(0x21)", ErrorCode(0x21).String())
	require.Equal(t, "H3_UNKNOWN(0x111)", ErrorCode(0x111).String())
}

func TestH3Error(t *testing.T) {
	e := &H3Error{Code: ErrCodeClosedCriticalStream, Reason: "control stream closed", Err: io.EOF}
	require.Equal(t, "h3: H3_CLOSED_CRITICAL_STREAM: control stream closed: EOF", e.Error())
	wrapped := fmt.Errorf("conn: %w", e)
	require.ErrorIs(t, wrapped, io.EOF)
	var h *H3Error
	require.True(t, errors.As(wrapped, &h))
	require.Same(t, e, h)
	code, ok := CodeOf(wrapped)
	require.True(t, ok)
	require.Equal(t, ErrCodeClosedCriticalStream, code)

	require.Equal(t, "h3: H3_ID_ERROR: x", h3Err(ErrCodeIDError, "x").Error())
	_, ok = CodeOf(io.EOF)
	require.False(t, ok)
}

func TestIsReserved(t *testing.T) {
	for _, v := range []uint64{0x21, 0x40, 0x5f, 0x1f*1000 + 0x21, 0x1f*((1<<62-1-0x21)/0x1f) + 0x21} {
		require.True(t, IsReserved(v), "%#x", v)
	}
	for _, v := range []uint64{0, 0x1f, 0x20, 0x22, 0x41, 0x33, 1<<62 - 1} {
		require.False(t, IsReserved(v), "%#x", v)
	}
}
