package h3

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// fuzzMaxHeader is the header limit under fuzzing: small, so that the
// limit paths are reached.
const fuzzMaxHeader = 512

// FuzzRequestFrames feeds arbitrary bytes to the request stream parser as
// a peer's request stream (ended cleanly): the head, its field section,
// the body and trailers. Nothing may panic, every error must be one that
// errors.go lets the connection act on, the parser may never return more
// body bytes than it was given, and a completed body must match its
// Content-Length.
func FuzzRequestFrames(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := newMessageReader(bytes.NewReader(b), fuzzMaxHeader)
		block, err := m.readHead()
		if err != nil {
			checkParseError(t, err)
			return
		}
		require.LessOrEqual(t, len(block), fuzzMaxHeader)
		head, err := decodeRequestHead(block, fuzzMaxHeader)
		if err == nil {
			req, err := head.newRequest()
			if err == nil {
				require.NotEmpty(t, req.Method)
				require.NotNil(t, req.URL)
				require.Equal(t, 3, req.ProtoMajor)
				m.contentLength = req.ContentLength
			} else {
				checkParseError(t, err)
			}
		} else {
			checkParseError(t, err)
		}

		// The body is read whatever the head was, to reach its states.
		buf := make([]byte, 7)
		total := 0
		for {
			n, err := m.read(buf)
			total += n
			if err == io.EOF {
				if m.contentLength >= 0 {
					require.EqualValues(t, m.contentLength, total)
				}
				break
			}
			if err != nil {
				checkParseError(t, err)
				break
			}
			require.Positive(t, n, "read returned neither data nor an error")
		}
		require.LessOrEqual(t, total, len(b))
	})
}

// checkParseError fails unless err is one the connection knows how to act
// on (errors.go) with a code the RFCs give for request parsing.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	var ce *wire.H3Error
	var se *streamError
	switch {
	case errors.Is(err, errHeaderTooLarge):
	case errors.As(err, &ce):
		require.Contains(t, []wire.ErrorCode{wire.ErrCodeFrameError, wire.ErrCodeFrameUnexpected, errCodeQPACKDecompressionFailed}, ce.Code, err.Error())
	case errors.As(err, &se):
		require.Contains(t, []wire.ErrorCode{wire.ErrCodeMessageError, wire.ErrCodeRequestIncomplete, wire.ErrCodeExcessiveLoad}, se.code, err.Error())
	default:
		t.Fatalf("unexpected error %T: %v", err, err)
	}
}

// fuzzSeeds are well-formed and malformed request streams; the same kinds
// are in testdata/fuzz/FuzzRequestFrames.
func fuzzSeeds() [][]byte {
	data := func(s string) []byte { return rawFrame(wire.FrameData, []byte(s)) }
	return [][]byte{
		nil,
		headersFrame(getFields...),
		cat(headersFrame(append(getFields, "content-length", "5")...), data("he"), rawFrame(0x21, []byte("x")), data("llo"), headersFrame("x-t", "v")),
		headersFrame(":method", "CONNECT", ":protocol", "connect-udp", ":scheme", "https", ":authority", "localhost", ":path", "/udp", "capsule-protocol", "?1"),
		headersFrame(":method", "CONNECT", ":authority", "192.0.2.1:443"),
		cat(headersFrame(getFields...), data("a"), headersFrame("x-t", "v"), data("b")),
		data("x"),
		headersFrame(append(getFields, "X-Upper", "v")...),
		appendFrameHeader(nil, wire.FrameHeaders, 1<<20),
		rawFrame(wire.FrameHeaders, []byte{0, 0, 0x80}),
	}
}
