package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// TestGoAwayStockClient: after GoAway the stock client opens no new
// request, an open CONNECT tunnel keeps working, Drained closes when it
// ends, and the client then closes the connection itself.
func TestGoAwayStockClient(t *testing.T) {
	srv := startServer(t, Config{Datagrams: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.Write([]byte("ok"))
			return
		}
		w.Header().Set("Capsule-Protocol", "?1")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		buf := make([]byte, 100)
		for {
			n, err := r.Body.Read(buf)
			if err != nil {
				return
			}
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
		}
	})})
	cc, sc := dialClient(t, srv)
	_, body := get(t, cc, "/") // stream 0
	require.Equal(t, "ok", body)
	rs := openConnectUDP(t, cc) // stream 4

	require.NoError(t, sc.GoAway())
	require.NoError(t, sc.GoAway(), "idempotent")

	// The next request fails: either the client saw GOAWAY and refuses to
	// open a stream, or its stream reached the server after GoAway and was
	// rejected.
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/", nil)
	_, _, err := do(cc, req)
	require.Error(t, err)
	t.Logf("request after GOAWAY: %v", err)
	var se *quic.StreamError
	if errors.As(err, &se) {
		require.EqualValues(t, wire.ErrCodeRequestRejected, se.ErrorCode)
	} else {
		require.ErrorContains(t, err, "graceful shutdown")
	}

	// The tunnel opened before GOAWAY still works.
	select {
	case <-sc.Drained():
		t.Fatal("drained while a tunnel is open")
	default:
	}
	for range 5 {
		_, err := rs.Write([]byte("ping"))
		require.NoError(t, err)
		got := make([]byte, 4)
		_, err = io.ReadFull(rs, got)
		require.NoError(t, err)
		require.Equal(t, "ping", string(got))
	}

	// Ending it drains the connection; the client closes it (no more
	// active streams after GOAWAY) with H3_NO_ERROR.
	require.NoError(t, rs.Close())
	_, err = io.ReadAll(rs)
	require.NoError(t, err)
	select {
	case <-sc.Drained():
	case <-time.After(waitShort):
		t.Fatal("not drained")
	}
	require.NoError(t, sc.wait(t))
}

// TestGoAwayRawPeer: the GOAWAY carries the first stream ID not accepted,
// and streams at or above it are reset with H3_REQUEST_REJECTED without
// running a handler.
func TestGoAwayRawPeer(t *testing.T) {
	handled := make(capture[string], 4)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled <- r.URL.Path
		w.Write([]byte("ok"))
	})})
	qc := dialQUIC(t, srv, false)
	sc := srv.next(t)

	// Stream 0 is served.
	str0, err := qc.OpenStream()
	require.NoError(t, err)
	_, err = str0.Write(headersFrame(getFields...))
	require.NoError(t, err)
	require.NoError(t, str0.Close())
	require.Equal(t, "200", readResponse(t, str0)[":status"])
	require.Equal(t, "/", handled.get(t))
	select {
	case <-sc.Drained():
		t.Fatal("drained before GoAway")
	default:
	}

	require.NoError(t, sc.GoAway())
	select {
	case <-sc.Drained():
	case <-time.After(waitShort):
		t.Fatal("not drained")
	}

	// The server's control stream: SETTINGS, then GOAWAY(4).
	ctrl, err := qc.AcceptUniStream(context.Background())
	require.NoError(t, err)
	typ, err := wire.ReadStreamType(ctrl)
	require.NoError(t, err)
	require.EqualValues(t, wire.StreamTypeControl, typ)
	r := wire.NewControlStreamReader(ctrl, wire.RoleServer)
	f, err := r.Next()
	require.NoError(t, err)
	require.EqualValues(t, wire.FrameSettings, f.Type)
	f, err = r.Next()
	require.NoError(t, err)
	require.EqualValues(t, wire.FrameGoAway, f.Type)
	require.EqualValues(t, 4, f.GoAwayID)

	// A request that arrives anyway is rejected.
	str4, err := qc.OpenStream()
	require.NoError(t, err)
	require.EqualValues(t, 4, str4.StreamID())
	_, err = str4.Write(headersFrame(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/late"))
	require.NoError(t, err)
	require.Equal(t, wire.ErrCodeRequestRejected, waitReset(t, str4))
	select {
	case p := <-handled:
		t.Fatalf("handler ran for %s", p)
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, qc.Context().Err(), "the connection lives on")
}

// TestGoAwayTransportRetries: quic-go's http3.Transport, told GOAWAY by
// masqroute's server, closes the drained connection with H3_NO_ERROR and
// sends its next request on a new connection.
//
// The test waits for that close before the next request. Sent earlier, the
// request races inside quic-go's client: it may open stream 4 on the old
// connection just before the client, handling GOAWAY with no request in
// flight, closes that connection locally, and the request fails with
// "H3_NO_ERROR (local)" instead of being retried (seen in a fresh-clone
// make test). The server's
// side of a late request, a reset with H3_REQUEST_REJECTED, is
// TestGoAwayRawPeer's.
func TestGoAwayTransportRetries(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	_, pool := testCert(t)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddr(ctx, srv.addr(), tlsCfg, cfg)
		},
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}

	rsp, err := client.Get("https://localhost/")
	require.NoError(t, err)
	rsp.Body.Close()
	first := srv.next(t)
	require.NoError(t, first.GoAway())
	require.NoError(t, first.wait(t), "the client closes the drained connection with H3_NO_ERROR")

	rsp, err = client.Get("https://localhost/")
	require.NoError(t, err)
	body, err := io.ReadAll(rsp.Body)
	require.NoError(t, err)
	rsp.Body.Close()
	require.Equal(t, "ok", string(body))
	second := srv.next(t)
	require.NotSame(t, first, second)
}
