package h3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// seenRequest is what a handler saw of its request.
type seenRequest struct {
	method, proto, host, uri, path, remote string
	protoMajor                             int
	contentLength                          int64
	header                                 http.Header
	body                                   string
	bodyErr                                error
	trailer                                http.Header
	hasTLS                                 bool
	hasStream                              bool
	ctxValue                               any
}

type ctxKey struct{}

func TestRoundTrips(t *testing.T) {
	seen := make(capture[seenRequest], 1)
	srv := startServer(t, Config{
		ConnContext: func(ctx context.Context) context.Context { return context.WithValue(ctx, ctxKey{}, "conn") },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			_, hasStream := RequestStream(r)
			seen <- seenRequest{
				method: r.Method, proto: r.Proto, host: r.Host, uri: r.RequestURI, path: r.URL.Path,
				remote: r.RemoteAddr, protoMajor: r.ProtoMajor, contentLength: r.ContentLength,
				header: r.Header.Clone(), body: string(b), bodyErr: err, trailer: r.Trailer.Clone(),
				hasTLS: r.TLS != nil, hasStream: hasStream, ctxValue: r.Context().Value(ctxKey{}),
			}
			switch r.URL.Path {
			case "/echo":
				w.Header().Set("X-Echo", r.Header.Get("X-Test"))
				w.WriteHeader(http.StatusCreated)
				w.Write(b)
			case "/big":
				w.Header().Set("Content-Type", "application/octet-stream")
				for i := range 64 {
					w.Write(bytes.Repeat([]byte{byte(i)}, 1000))
				}
			case "/nocontent":
				w.WriteHeader(http.StatusNoContent)
				_, err := w.Write([]byte("x"))
				w.Header().Set("X-Write-Err", fmt.Sprint(err)) // too late to be sent
			case "/html":
				w.Write([]byte("<html><body>hi</body></html>"))
			case "/head":
				w.Write([]byte("twelve bytes"))
			case "/notfound":
				http.NotFound(w, r)
			}
		}),
	})
	cc, _ := dialClient(t, srv)

	t.Run("GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost/echo?q=1", nil)
		req.Header.Set("X-Test", "hello")
		req.Header.Add("Cookie", "a=1")
		rsp, body, err := do(cc, req)
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, rsp.StatusCode)
		require.Equal(t, "hello", rsp.Header.Get("X-Echo"))
		require.NotEmpty(t, rsp.Header.Get("Date"))
		require.Equal(t, "0", rsp.Header.Get("Content-Length"))
		require.Empty(t, body)

		s := seen.get(t)
		require.Equal(t, "GET", s.method)
		require.Equal(t, "HTTP/3.0", s.proto)
		require.Equal(t, 3, s.protoMajor)
		require.Equal(t, "localhost", s.host)
		require.Equal(t, "/echo?q=1", s.uri)
		require.Equal(t, "/echo", s.path)
		require.Equal(t, "hello", s.header.Get("X-Test"))
		require.Equal(t, "a=1", s.header.Get("Cookie"))
		require.Empty(t, s.header.Get("Host"))
		require.EqualValues(t, -1, s.contentLength)
		require.NotEmpty(t, s.remote)
		require.True(t, s.hasTLS)
		require.True(t, s.hasStream)
		require.Equal(t, "conn", s.ctxValue)
		require.NoError(t, s.bodyErr)
	})

	t.Run("POST", func(t *testing.T) {
		payload := strings.Repeat("0123456789", 10_000)
		req, _ := http.NewRequest(http.MethodPost, "https://localhost/echo", strings.NewReader(payload))
		_, body, err := do(cc, req)
		require.NoError(t, err)
		require.Equal(t, payload, body)
		s := seen.get(t)
		require.Equal(t, payload, s.body)
		require.EqualValues(t, len(payload), s.contentLength)
		require.Equal(t, fmt.Sprint(len(payload)), s.header.Get("Content-Length"))
	})

	t.Run("POST unknown length", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://localhost/echo", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")))
		rsp, body, err := do(cc, req)
		require.NoError(t, err)
		require.Equal(t, "abcdef", body)
		require.EqualValues(t, 6, rsp.ContentLength, "a small complete body gets a Content-Length")
		require.EqualValues(t, -1, seen.get(t).contentLength)
	})

	t.Run("large response", func(t *testing.T) {
		rsp, body := get(t, cc, "/big")
		require.Equal(t, http.StatusOK, rsp.StatusCode)
		require.Len(t, body, 64_000)
		require.EqualValues(t, -1, rsp.ContentLength, "sent before the handler finished")
		for i := range 64 {
			require.Equal(t, strings.Repeat(string(rune(i)), 1000), body[i*1000:(i+1)*1000])
		}
		seen.get(t)
	})

	t.Run("204", func(t *testing.T) {
		rsp, body := get(t, cc, "/nocontent")
		require.Equal(t, http.StatusNoContent, rsp.StatusCode)
		require.Empty(t, body)
		require.Empty(t, rsp.Header.Get("X-Write-Err"))
		seen.get(t)
	})

	t.Run("sniffed Content-Type", func(t *testing.T) {
		rsp, body := get(t, cc, "/html")
		require.Equal(t, "text/html; charset=utf-8", rsp.Header.Get("Content-Type"))
		require.Equal(t, "<html><body>hi</body></html>", body)
		seen.get(t)
	})

	t.Run("404", func(t *testing.T) {
		rsp, body := get(t, cc, "/notfound")
		require.Equal(t, http.StatusNotFound, rsp.StatusCode)
		require.Equal(t, "404 page not found\n", body)
		seen.get(t)
	})

	t.Run("HEAD", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, "https://localhost/head", nil)
		rsp, body, err := do(cc, req)
		require.NoError(t, err)
		require.Empty(t, body)
		require.EqualValues(t, 12, rsp.ContentLength)
		require.Equal(t, "HEAD", seen.get(t).method)
	})
}

func TestTrailers(t *testing.T) {
	seen := make(capture[seenRequest], 1)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- seenRequest{body: string(b), bodyErr: err, trailer: r.Trailer.Clone()}
		sum := sha256.Sum256(b)
		w.Header().Set("Trailer", "X-Checksum")
		w.Write(b)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", hex.EncodeToString(sum[:]))
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		w.Header().Set(http.TrailerPrefix+"Content-Length", "1") // not allowed as a trailer
	})})
	cc, _ := dialClient(t, srv)

	req, _ := http.NewRequest(http.MethodPost, "https://localhost/", strings.NewReader("payload"))
	req.Trailer = http.Header{"X-Req-Trailer": {"v1"}}
	rsp, body, err := do(cc, req)
	require.NoError(t, err)
	require.Equal(t, "payload", body)
	sum := sha256.Sum256([]byte(body))
	require.Equal(t, hex.EncodeToString(sum[:]), rsp.Trailer.Get("X-Checksum"))
	require.Equal(t, "late", rsp.Trailer.Get("X-Late"))
	require.Empty(t, rsp.Trailer.Get("Content-Length"))
	require.Empty(t, rsp.Header.Get("X-Checksum"))

	s := seen.get(t)
	require.NoError(t, s.bodyErr)
	require.Equal(t, "payload", s.body)
	require.Equal(t, "v1", s.trailer.Get("X-Req-Trailer"))
}

func TestInformationalResponses(t *testing.T) {
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusSwitchingProtocols) // dropped
		w.Header().Set("X-Final", "yes")
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusInternalServerError) // superfluous
		w.Write([]byte("done"))
	})})
	cc, _ := dialClient(t, srv)

	var got []int
	var links []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		links = append(links, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "https://localhost/", nil)
	rsp, body, err := do(cc, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, rsp.StatusCode)
	require.Equal(t, "done", body)
	require.Equal(t, "yes", rsp.Header.Get("X-Final"))
	require.Equal(t, []int{103, 103}, got)
	require.Equal(t, []string{"</style.css>; rel=preload", "</style.css>; rel=preload"}, links)
}

// TestExtendedConnect drives a connect-udp request the way masque-go's
// client does, then exchanges bytes over the stream in both directions.
func TestExtendedConnect(t *testing.T) {
	seen := make(capture[seenRequest], 1)
	srv := startServer(t, Config{Datagrams: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := RequestStream(r)
		seen <- seenRequest{method: r.Method, proto: r.Proto, host: r.Host, uri: r.RequestURI, path: r.URL.Path,
			header: r.Header.Clone(), contentLength: r.ContentLength, hasStream: s != nil && s.Conn() != nil}
		w.Header().Set("Capsule-Protocol", "?1")
		w.WriteHeader(http.StatusOK)
		// Echo every read back, uppercased, flushed at once.
		buf := make([]byte, 1500)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(bytes.ToUpper(buf[:n]))
				if err := http.NewResponseController(w).Flush(); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})})
	cc, _ := dialClient(t, srv)
	rs := openConnectUDP(t, cc)
	require.True(t, cc.Settings().EnableDatagrams)
	require.True(t, cc.Settings().EnableExtendedConnect)

	s := seen.get(t)
	require.Equal(t, http.MethodConnect, s.method)
	require.Equal(t, "connect-udp", s.proto)
	require.Equal(t, "localhost:4433", s.host)
	require.Equal(t, "/masque/udp/192.0.2.1/443/", s.uri)
	require.Equal(t, "/masque/udp/192.0.2.1/443/", s.path)
	require.Equal(t, "?1", s.header.Get("Capsule-Protocol"))
	require.EqualValues(t, -1, s.contentLength)
	require.True(t, s.hasStream)

	for i := range 50 {
		msg := fmt.Sprintf("capsule-%d-%s", i, strings.Repeat("x", i*20))
		_, err := rs.Write([]byte(msg))
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(rs, got)
		require.NoError(t, err)
		require.Equal(t, strings.ToUpper(msg), string(got))
	}
	require.NoError(t, rs.Close()) // FIN: the handler's Body.Read gets io.EOF and returns
	_, err := io.ReadAll(rs)
	require.NoError(t, err, "the handler's return closes the stream cleanly")
}

// resetResult is what a handler saw when its peer reset the stream.
type resetResult struct {
	readErr  error
	ctxErr   error
	ctxCause error
	elapsed  time.Duration
}

// TestPeerReset: a peer's reset of either direction reaches the handler
// promptly, through Body.Read and through the request context.
func TestPeerReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		read      bool // the handler blocks in Body.Read, else on its context
		cancel    func(rs *http3.RequestStream)
		wantCode  wire.ErrorCode
		wantCause bool // the context cause is a StreamError with wantCode
	}{
		{"RESET_STREAM while reading", true, func(rs *http3.RequestStream) { rs.CancelWrite(quic.StreamErrorCode(wire.ErrCodeRequestCancelled)) }, wire.ErrCodeRequestCancelled, true},
		{"RESET_STREAM while not reading", false, func(rs *http3.RequestStream) { rs.CancelWrite(quic.StreamErrorCode(wire.ErrCodeRequestCancelled)) }, wire.ErrCodeRequestCancelled, true},
		{"STOP_SENDING while not reading", false, func(rs *http3.RequestStream) { rs.CancelRead(quic.StreamErrorCode(wire.ErrCodeRequestCancelled)) }, wire.ErrCodeRequestCancelled, true},
		{"both while reading", true, func(rs *http3.RequestStream) {
			rs.CancelWrite(quic.StreamErrorCode(wire.ErrCodeConnectError))
			rs.CancelRead(quic.StreamErrorCode(wire.ErrCodeConnectError))
		}, wire.ErrCodeConnectError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(capture[struct{}], 1)
			result := make(capture[resetResult], 1)
			srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Capsule-Protocol", "?1")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				started <- struct{}{}
				var res resetResult
				t0 := time.Now()
				if tc.read {
					_, res.readErr = io.ReadAll(r.Body)
				}
				select {
				case <-r.Context().Done():
				case <-time.After(waitShort):
				}
				res.elapsed = time.Since(t0)
				res.ctxErr = r.Context().Err()
				res.ctxCause = context.Cause(r.Context())
				result <- res
			})})
			cc, _ := dialClient(t, srv)
			rs := openConnectUDP(t, cc)
			started.get(t)
			time.Sleep(20 * time.Millisecond) // let the handler block
			tc.cancel(rs)

			res := result.get(t)
			require.Error(t, res.ctxErr, "context not cancelled")
			require.Less(t, res.elapsed, time.Second)
			var se *quic.StreamError
			if tc.read {
				require.ErrorAs(t, res.readErr, &se)
				require.True(t, se.Remote)
				require.EqualValues(t, tc.wantCode, se.ErrorCode)
			}
			require.ErrorAs(t, res.ctxCause, &se)
			require.EqualValues(t, tc.wantCode, se.ErrorCode)
		})
	}
}

func TestHandlerPanic(t *testing.T) {
	srv := startServer(t, Config{
		Logger: discardLogger(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/panic":
				w.Write([]byte("partial"))
				panic("boom")
			case "/abort":
				panic(http.ErrAbortHandler)
			}
			w.Write([]byte("ok"))
		}),
	})
	cc, sc := dialClient(t, srv)
	for _, path := range []string{"/panic", "/abort"} {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost"+path, nil)
		_, _, err := do(cc, req)
		var se *quic.StreamError
		require.ErrorAs(t, err, &se, path)
		require.EqualValues(t, wire.ErrCodeInternalError, se.ErrorCode, path)

		_, body := get(t, cc, "/")
		require.Equal(t, "ok", body, "the connection keeps serving")
	}
	require.NoError(t, sc.Context().Err())
}

func TestOversizeHeadersGet431(t *testing.T) {
	srv := startServer(t, Config{MaxHeaderBytes: 1024, Handler: okHandler})
	cc, _ := dialClient(t, srv)
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2000))
	rsp, _, err := do(cc, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, rsp.StatusCode)

	_, body := get(t, cc, "/")
	require.Equal(t, "ok", body)
}

// TestResponseController: Flush sends the header and body at once, and the
// deadlines reach the stream.
func TestResponseController(t *testing.T) {
	results := make(capture[error], 4)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		results <- rc.EnableFullDuplex()
		w.Write([]byte("first"))
		results <- rc.Flush()
		results <- rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := io.ReadAll(r.Body) // the client never finishes its body
		results <- err
	})})
	cc, _ := dialClient(t, srv)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, "https://localhost/", pr)
	rsp, err := cc.RoundTrip(req)
	require.NoError(t, err)
	defer rsp.Body.Close()
	first := make([]byte, 5)
	_, err = io.ReadFull(rsp.Body, first)
	require.NoError(t, err)
	require.Equal(t, "first", string(first))
	require.NoError(t, results.get(t))
	require.NoError(t, results.get(t))
	require.NoError(t, results.get(t))
	var ne interface{ Timeout() bool }
	require.ErrorAs(t, results.get(t), &ne)
	require.True(t, ne.Timeout())
}

func TestRequestStreamOutsideConn(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	_, ok := RequestStream(r)
	require.False(t, ok)
}

func TestContentLengthMismatchByHandler(t *testing.T) {
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		n, err := w.Write([]byte("0123456789ABC"))
		if n != 0 || !errors.Is(err, http.ErrContentLength) {
			panic("expected ErrContentLength")
		}
		w.Write([]byte("short"))
	})})
	cc, _ := dialClient(t, srv)
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/", nil)
	_, _, err := do(cc, req)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.EqualValues(t, wire.ErrCodeInternalError, se.ErrorCode)
}

// A CONNECT-UDP handler finds the quarter stream ID its HTTP Datagrams carry
// (RequestStream's StreamID / 4), and checks that the peer accepts HTTP
// Datagrams at all. (This was ExampleRequestStream, which never ran.)
func TestRequestStreamInHandler(t *testing.T) {
	srv := startServer(t, Config{Datagrams: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := RequestStream(r)
		if !ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		<-s.Conn().PeerSettings()
		fmt.Fprintf(w, "stream %d datagrams %v", s.StreamID(), s.Conn().Settings().Datagram)
	})})
	cc, _ := dialClient(t, srv)
	rsp, body := get(t, cc, "/")
	require.Equal(t, http.StatusOK, rsp.StatusCode)
	require.Equal(t, "stream 0 datagrams true", body)
	_, body = get(t, cc, "/")
	require.Equal(t, "stream 4 datagrams true", body)
}
