package h3

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A raw peer sends request streams the stock client never would.

// echoHandler reads the whole body and echoes it.
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("X-Trailer", r.Trailer.Get("X-T"))
	w.Write(b)
})

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestMalformedRequests(t *testing.T) {
	const grease = 0x1f*2 + 0x21
	connectUDP := []string{":method", "CONNECT", ":protocol", "connect-udp", ":scheme", "https", ":authority", "localhost", ":path", "/udp"}
	with := func(base []string, extra ...string) []string { return append(append([]string{}, base...), extra...) }
	data := func(s string) []byte { return rawFrame(wire.FrameData, []byte(s)) }
	trailers := headersFrame("x-t", "v")

	for _, tc := range []struct {
		name       string
		stream     []byte
		fin        bool
		connErr    wire.ErrorCode // the connection is closed with it, or
		streamErr  wire.ErrorCode // the stream is reset with it, or
		status     string         // this response arrives
		wantFields map[string]string
	}{
		// Frame sequence (RFC 9114 §4.1, §7).
		{name: "DATA first", stream: data("x"), connErr: wire.ErrCodeFrameUnexpected},
		{name: "SETTINGS first", stream: rawFrame(wire.FrameSettings, nil), connErr: wire.ErrCodeFrameUnexpected},
		{name: "PUSH_PROMISE", stream: rawFrame(wire.FramePushPromise, []byte{0}), connErr: wire.ErrCodeFrameUnexpected},
		{name: "HTTP/2 PING type", stream: rawFrame(0x06, nil), connErr: wire.ErrCodeFrameUnexpected},
		{name: "PRIORITY_UPDATE", stream: rawFrame(wire.FramePriorityUpdateRequest, []byte{0}), connErr: wire.ErrCodeFrameUnexpected},
		{name: "GOAWAY in body", stream: cat(headersFrame(getFields...), appendGoAway(nil, 0)), connErr: wire.ErrCodeFrameUnexpected},
		{name: "truncated HEADERS", stream: headersFrame(getFields...)[:5], fin: true, connErr: wire.ErrCodeFrameError},
		{name: "truncated frame header", stream: []byte{0x01, 0x40}, fin: true, connErr: wire.ErrCodeFrameError},
		{name: "truncated unknown frame", stream: rawFrame(grease, []byte("abc"))[:3], fin: true, connErr: wire.ErrCodeFrameError},
		{name: "truncated DATA", stream: cat(headersFrame(getFields...), data("hello")[:4]), fin: true, connErr: wire.ErrCodeFrameError},
		{name: "DATA after trailers", stream: cat(headersFrame(getFields...), data("a"), trailers, data("b")), connErr: wire.ErrCodeFrameUnexpected},
		{name: "HEADERS after trailers", stream: cat(headersFrame(getFields...), trailers, trailers), connErr: wire.ErrCodeFrameUnexpected},
		{name: "empty stream", fin: true, streamErr: wire.ErrCodeRequestIncomplete},
		{name: "only unknown frames", stream: rawFrame(grease, nil), fin: true, streamErr: wire.ErrCodeRequestIncomplete},

		// Field sections (RFC 9114 §4.2, §4.3; RFC 9220 §3).
		{name: "QPACK dynamic reference", stream: rawFrame(wire.FrameHeaders, []byte{0, 0, 0x80}), connErr: errCodeQPACKDecompressionFailed},
		{name: "QPACK insert count", stream: rawFrame(wire.FrameHeaders, []byte{1, 0}), connErr: errCodeQPACKDecompressionFailed},
		{name: "extended CONNECT without :path", stream: headersFrame(connectUDP[:8]...), streamErr: wire.ErrCodeMessageError},
		{name: "extended CONNECT without :scheme", stream: headersFrame(":method", "CONNECT", ":protocol", "connect-udp", ":authority", "localhost", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "extended CONNECT without :authority", stream: headersFrame(":method", "CONNECT", ":protocol", "connect-udp", ":scheme", "https", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "invalid :protocol", stream: headersFrame(":method", "CONNECT", ":protocol", "connect udp", ":scheme", "https", ":authority", "localhost", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: ":protocol on GET", stream: headersFrame(with(getFields, ":protocol", "x")...), streamErr: wire.ErrCodeMessageError},
		{name: "CONNECT with :path", stream: headersFrame(":method", "CONNECT", ":authority", "localhost:443", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "CONNECT without :authority", stream: headersFrame(":method", "CONNECT"), streamErr: wire.ErrCodeMessageError},
		{name: "missing :method", stream: headersFrame(getFields[2:]...), streamErr: wire.ErrCodeMessageError},
		{name: "missing :path", stream: headersFrame(getFields[:6]...), streamErr: wire.ErrCodeMessageError},
		{name: "missing :scheme", stream: headersFrame(":method", "GET", ":authority", "localhost", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "no authority", stream: headersFrame(":method", "GET", ":scheme", "https", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "relative :path", stream: headersFrame(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "x"), streamErr: wire.ErrCodeMessageError},
		{name: "repeated :path", stream: headersFrame(with(getFields, ":path", "/")...), streamErr: wire.ErrCodeMessageError},
		{name: ":status in a request", stream: headersFrame(with(getFields, ":status", "200")...), streamErr: wire.ErrCodeMessageError},
		{name: "unknown pseudo-header", stream: headersFrame(with(getFields, ":foo", "x")...), streamErr: wire.ErrCodeMessageError},
		{name: "pseudo-header after regular", stream: headersFrame(":method", "GET", "x-a", "b", ":scheme", "https", ":authority", "localhost", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "uppercase name", stream: headersFrame(with(getFields, "X-Upper", "v")...), streamErr: wire.ErrCodeMessageError},
		{name: "invalid name", stream: headersFrame(with(getFields, "x y", "v")...), streamErr: wire.ErrCodeMessageError},
		{name: "invalid value", stream: headersFrame(with(getFields, "x-a", "a\r\nb")...), streamErr: wire.ErrCodeMessageError},
		{name: "connection field", stream: headersFrame(with(getFields, "connection", "close")...), streamErr: wire.ErrCodeMessageError},
		{name: "transfer-encoding", stream: headersFrame(with(getFields, "transfer-encoding", "chunked")...), streamErr: wire.ErrCodeMessageError},
		{name: "TE gzip", stream: headersFrame(with(getFields, "te", "gzip")...), streamErr: wire.ErrCodeMessageError},
		{name: "Host differs from :authority", stream: headersFrame(with(getFields, "host", "other")...), streamErr: wire.ErrCodeMessageError},
		{name: "userinfo in :authority", stream: headersFrame(":method", "GET", ":scheme", "https", ":authority", "u@localhost", ":path", "/"), streamErr: wire.ErrCodeMessageError},
		{name: "invalid Content-Length", stream: headersFrame(with(getFields, "content-length", "-1")...), streamErr: wire.ErrCodeMessageError},
		{name: "conflicting Content-Length", stream: headersFrame(with(getFields, "content-length", "1", "content-length", "2")...), streamErr: wire.ErrCodeMessageError},
		{name: "pseudo-header in trailers", stream: cat(headersFrame(getFields...), headersFrame(":path", "/")), fin: true, streamErr: wire.ErrCodeMessageError},
		{name: "forbidden trailer", stream: cat(headersFrame(getFields...), headersFrame("content-length", "0")), fin: true, streamErr: wire.ErrCodeMessageError},

		// Content-Length against DATA (RFC 9114 §4.1.2).
		{name: "body above Content-Length", stream: cat(headersFrame(with(getFields, "content-length", "2")...), data("abc")), streamErr: wire.ErrCodeMessageError},
		{name: "body below Content-Length", stream: cat(headersFrame(with(getFields, "content-length", "4")...), data("abc")), fin: true, streamErr: wire.ErrCodeMessageError},
		{name: "trailers before Content-Length is reached", stream: cat(headersFrame(with(getFields, "content-length", "4")...), data("abc"), trailers), streamErr: wire.ErrCodeMessageError},

		// Size limits (RFC 9114 §4.2.2): MaxHeaderBytes is 1024 here.
		{name: "HEADERS frame above the limit", stream: appendFrameHeader(nil, wire.FrameHeaders, 1<<20), status: "431"},
		{name: "decoded fields above the limit", stream: headersFrame(with(getFields, strings.Split(strings.Repeat("x-a,b,", 30), ",")[:60]...)...), status: "431"},
		{name: "trailers above the limit", stream: cat(headersFrame(getFields...), appendFrameHeader(nil, wire.FrameHeaders, 4096)), streamErr: wire.ErrCodeExcessiveLoad},

		// What is fine.
		{name: "unknown frames anywhere", fin: true, status: "200", wantFields: map[string]string{"x-trailer": "v", "content-length": "5"},
			stream: cat(rawFrame(grease, []byte("skip")), headersFrame(with(getFields, "content-length", "5")...), rawFrame(0x21, nil),
				data("he"), rawFrame(grease, make([]byte, 3000)), data(""), data("llo"), trailers, rawFrame(grease, []byte("x")))},
		{name: "Host instead of :authority", fin: true, status: "200",
			stream: headersFrame(":method", "GET", ":scheme", "https", ":path", "/", "host", "localhost")},
		{name: "OPTIONS *", fin: true, status: "200",
			stream: headersFrame(":method", "OPTIONS", ":scheme", "https", ":authority", "localhost", ":path", "*")},
		{name: "plain CONNECT", fin: true, status: "200",
			stream: headersFrame(":method", "CONNECT", ":authority", "192.0.2.1:443")},
		{name: "extended CONNECT", fin: true, status: "200", stream: headersFrame(connectUDP...)},
		{name: "other scheme", fin: true, status: "200",
			stream: headersFrame(":method", "GET", ":scheme", "coap", ":path", "/x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, Config{Handler: echoHandler, MaxHeaderBytes: 1024})
			qc := dialQUIC(t, srv, false)
			sc := srv.next(t)
			str, err := qc.OpenStream()
			require.NoError(t, err)
			_, err = str.Write(tc.stream)
			require.NoError(t, err)
			if tc.fin {
				// The server may have reset the stream already.
				_ = str.Close()
			}
			switch {
			case tc.connErr != 0:
				require.Equal(t, tc.connErr, waitConnError(t, qc))
				code, ok := wire.CodeOf(sc.wait(t))
				require.True(t, ok)
				require.Equal(t, tc.connErr, code)
			case tc.streamErr != 0:
				require.Equal(t, tc.streamErr, waitReset(t, str))
				require.NoError(t, qc.Context().Err())
			default:
				fields := readResponse(t, str)
				require.Equal(t, tc.status, fields[":status"])
				for k, v := range tc.wantFields {
					require.Equal(t, v, fields[k], k)
				}
				require.NoError(t, qc.Context().Err())
			}
		})
	}
}

// TestFieldSizeArithmetic pins the RFC 9114 §4.2.2 size rule: name + value
// + 32 per field.
func TestFieldSizeArithmetic(t *testing.T) {
	fields := []string{"aa", "bbb", "c", ""} // (2+3+32) + (1+0+32) = 70
	require.NoError(t, decodeFields(fieldBlock(fields...), 70, func(string, string) error { return nil }))
	require.ErrorIs(t, decodeFields(fieldBlock(fields...), 69, func(string, string) error { return nil }), errHeaderTooLarge)
}
