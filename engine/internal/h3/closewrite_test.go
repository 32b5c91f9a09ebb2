package h3

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// CloseWrite sends the response's FIN while the handler still reads the
// request body: the client sees the end of the response, then its own
// later bytes reach the handler. Writes after it fail.
func TestCloseWriteHalfCloses(t *testing.T) {
	type result struct {
		closeErr, writeErr error
		body               string
	}
	got := make(chan result, 1)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("early"))
		var res result
		res.closeErr = w.(interface{ CloseWrite() error }).CloseWrite()
		_, res.writeErr = w.Write([]byte("too late"))
		b, _ := io.ReadAll(r.Body)
		res.body = string(b)
		got <- res
	})})
	qc := dialQUIC(t, srv, false)
	str, err := qc.OpenStream()
	require.NoError(t, err)
	_, err = str.Write(headersFrame(":method", "CONNECT", ":authority", "example.com:443"))
	require.NoError(t, err)
	require.Equal(t, "200", readResponse(t, str)[":status"])

	fr := frameReader{r: str}
	typ, length, err := fr.next()
	require.NoError(t, err)
	require.EqualValues(t, wire.FrameData, typ)
	payload, err := fr.readPayload(length)
	require.NoError(t, err)
	require.Equal(t, "early", string(payload))
	str.SetReadDeadline(time.Now().Add(waitShort))
	_, _, err = fr.next()
	require.ErrorIs(t, err, io.EOF, "the response ended before the request did")

	_, err = str.Write(rawFrame(wire.FrameData, []byte("after the FIN")))
	require.NoError(t, err)
	require.NoError(t, str.Close())
	select {
	case res := <-got:
		require.NoError(t, res.closeErr)
		require.ErrorIs(t, res.writeErr, ErrWriteClosed)
		require.Equal(t, "after the FIN", res.body)
	case <-time.After(waitShort):
		t.Fatal("handler did not finish")
	}
}
