package h3

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// TestStreamControls: a handler resets its stream through RequestStream,
// closes its body early, and the fields HTTP/3 cannot carry are dropped.
func TestStreamControls(t *testing.T) {
	type result struct {
		sameCtx  bool
		readErr  error
		deadline error
	}
	results := make(capture[result], 1)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := RequestStream(r)
		switch r.URL.Path {
		case "/cancel-write":
			results <- result{sameCtx: s.Context() == r.Context()}
			s.CancelWrite(wire.ErrCodeConnectError)
		case "/cancel-read":
			s.CancelRead(wire.ErrCodeRequestCancelled)
			_, err := r.Body.Read(make([]byte, 1))
			results <- result{readErr: err}
		case "/close-body":
			r.Body.Close()
			_, err := r.Body.Read(make([]byte, 1))
			res := result{readErr: err}
			res.deadline = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second))
			w.Header().Set("Connection", "close")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("X-Bad", "a\nb")
			w.Header()["X-Bad Name"] = []string{"v"}
			w.Header().Set("X-Good", "v")
			w.Write([]byte("closed"))
			results <- res
		}
	})})
	cc, _ := dialClient(t, srv)

	t.Run("CancelWrite", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost/cancel-write", nil)
		_, _, err := do(cc, req)
		var se *quic.StreamError
		require.ErrorAs(t, err, &se)
		require.EqualValues(t, wire.ErrCodeConnectError, se.ErrorCode)
		require.True(t, results.get(t).sameCtx)
	})

	t.Run("CancelRead", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodPost, "https://localhost/cancel-read", pr)
		go func() {
			rsp, err := cc.RoundTrip(req)
			if err == nil {
				rsp.Body.Close()
			}
		}()
		var se *quic.StreamError
		require.ErrorAs(t, results.get(t).readErr, &se)
		require.False(t, se.Remote)
		require.EqualValues(t, wire.ErrCodeRequestCancelled, se.ErrorCode)
	})

	t.Run("Body.Close", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodPost, "https://localhost/close-body", pr)
		rsp, body, err := do(cc, req)
		require.NoError(t, err)
		require.Equal(t, "closed", body)
		require.Equal(t, "v", rsp.Header.Get("X-Good"))
		for _, k := range []string{"Connection", "Transfer-Encoding", "X-Bad", "X-Bad Name"} {
			require.Empty(t, rsp.Header.Values(k), k)
		}
		res := results.get(t)
		require.ErrorIs(t, res.readErr, http.ErrBodyReadAfterClose)
		require.NoError(t, res.deadline)
	})
}

// TestHandlerReturnsDuringUpload: a handler that answers without reading
// the body stops the upload with H3_NO_ERROR (RFC 9114 §4.1.2), and the
// client still gets the complete response.
func TestHandlerReturnsDuringUpload(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	qc := dialQUIC(t, srv, false)
	str, err := qc.OpenStream()
	require.NoError(t, err)
	_, err = str.Write(cat(headersFrame(append(getFields, "content-length", "1000000")...),
		appendFrameHeader(nil, wire.FrameData, 1000000), make([]byte, 1000)))
	require.NoError(t, err)

	require.Equal(t, "200", readResponse(t, str)[":status"])
	fr := frameReader{r: str}
	typ, length, err := fr.next()
	require.NoError(t, err)
	require.EqualValues(t, wire.FrameData, typ)
	payload, err := fr.readPayload(length)
	require.NoError(t, err)
	require.Equal(t, "ok", string(payload))
	_, _, err = fr.next()
	require.ErrorIs(t, err, io.EOF)

	select {
	case <-str.Context().Done():
	case <-time.After(waitShort):
		t.Fatal("upload not stopped")
	}
	var se *quic.StreamError
	require.ErrorAs(t, context.Cause(str.Context()), &se)
	require.EqualValues(t, wire.ErrCodeNoError, se.ErrorCode)
}

func TestMessageStateString(t *testing.T) {
	require.Equal(t, "head", stateHead.String())
	require.Equal(t, "body", stateBody.String())
	require.Equal(t, "trailers", stateTrailers.String())
	require.Equal(t, "messageState(9)", messageState(9).String())
}

// TestStreamCreditHeldByHandler: with RequireStreamCreditRelease, a request
// stream's credit returns to the peer only when its handler has returned,
// even if both directions of the stream ended before; so
// MaxIncomingStreams bounds the running handlers.
func TestStreamCreditHeldByHandler(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	releaseHandler := func() { once.Do(func() { close(release) }) }
	entered := make(capture[struct{}], 1)
	srv := startServerQUIC(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := RequestStream(r)
		s.CancelWrite(wire.ErrCodeRequestCancelled)
		s.CancelRead(wire.ErrCodeRequestCancelled)
		entered <- struct{}{}
		<-release
	})}, &quic.Config{MaxIncomingStreams: 1, RequireStreamCreditRelease: true})
	qc := dialQUIC(t, srv, false)
	srv.next(t)

	str, err := qc.OpenStreamSync(context.Background())
	require.NoError(t, err)
	_, err = str.Write(headersFrame(getFields...))
	require.NoError(t, err)
	_ = str.Close() // the handler may have reset the stream already
	entered.get(t)
	require.Equal(t, wire.ErrCodeRequestCancelled, waitReset(t, str))

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = qc.OpenStreamSync(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "credit returned while the handler runs")

	releaseHandler()
	ctx, cancel = context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	_, err = qc.OpenStreamSync(ctx)
	require.NoError(t, err)
}
