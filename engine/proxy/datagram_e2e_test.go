package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/proxy"
)

// rawTunnelConn is a QUIC connection whose datagrams the test reads itself:
// quic-go's RawClientConn runs the requests, and since the test never hands
// it the server's control stream, it never starts its own datagram reader.
type rawTunnelConn struct {
	qc *quic.Conn
	cc *http3.RawClientConn
}

func (e *proxyEnv) rawTunnelDial(t testing.TB) *rawTunnelConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, e.addr, clientTLS(t), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
	require.NoError(t, err)
	tr := &http3.Transport{AdditionalSettings: map[uint64]uint64{0x33: 1}}
	t.Cleanup(func() { qc.CloseWithError(0x100, "") })
	return &rawTunnelConn{qc: qc, cc: tr.NewRawClientConn(qc)}
}

// open opens a request stream without sending the request yet.
func (c *rawTunnelConn) open(t testing.TB) *http3.RequestStream {
	t.Helper()
	str, err := c.cc.OpenRequestStream(context.Background())
	require.NoError(t, err)
	return str
}

// connect sends a CONNECT-UDP request for target on str and returns the
// response.
func (c *rawTunnelConn) connect(t testing.TB, str *http3.RequestStream, target string) *http.Response {
	t.Helper()
	u, err := url.Parse("https://" + c.qc.RemoteAddr().String() + "/.well-known/masque/udp/" +
		hostOf(target) + "/" + portOf(target) + "/")
	require.NoError(t, err)
	req := &http.Request{Method: http.MethodConnect, Proto: "connect-udp", Host: u.Host, URL: u,
		Header: http.Header{"Capsule-Protocol": {"?1"}}}
	require.NoError(t, str.SendRequestHeader(req))
	resp, err := str.ReadResponse()
	require.NoError(t, err)
	return resp
}

// send sends payload as a context-0 datagram of stream id.
func (c *rawTunnelConn) send(t testing.TB, id quic.StreamID, payload []byte) {
	t.Helper()
	b := quicvarint.Append(nil, uint64(id)/4)
	b = quicvarint.Append(b, 0)
	require.NoError(t, c.qc.SendDatagram(append(b, payload...)))
}

// recv waits for the next datagram and returns its stream ID and payload
// (after the context ID).
func (c *rawTunnelConn) recv(t testing.TB) (quic.StreamID, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, err := c.qc.ReceiveDatagram(ctx)
	require.NoError(t, err)
	qsid, n, err := quicvarint.Parse(b)
	require.NoError(t, err)
	ctxID, m, err := quicvarint.Parse(b[n:])
	require.NoError(t, err)
	require.Zero(t, ctxID)
	return quic.StreamID(qsid * 4), b[n+m:]
}

func hostOf(hp string) string {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			return hp[:i]
		}
	}
	return hp
}

func portOf(hp string) string { return hp[len(hostOf(hp))+1:] }

// Every datagram the client sends reaches the router: no other goroutine
// (quic-go's HTTP/3 datagram reader, say) consumes any. The count must match
// exactly; a second consumer would take some.
func TestNoDatagramConsumedOutsideRouter(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	resp := c.connect(t, str, env.echo.Addr().String())
	require.Equal(t, 200, resp.StatusCode)
	const n = 500
	for i := range n {
		c.send(t, str.StreamID(), []byte{byte(i)})
		if i%50 == 49 { // pace: stay below quic-go's receive queue
			for range 50 {
				c.recv(t)
			}
		}
	}
	// The tunnel counts a write after it returns, which can be after
	// its echo is back.
	waitFor(t, "writes counted", func() bool { return env.proxy.Stats().ToTarget == n })
	st := env.proxy.Stats()
	require.Equal(t, uint64(n), st.Router.Dispatched, "datagrams that reached the router")
	require.Equal(t, uint64(n), st.Router.Delivered)
}

// A datagram that overtakes its request is held and delivered once the
// request arrives (RFC 9297 §2.1).
func TestDatagramBeforeRequest(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	c.send(t, str.StreamID(), []byte("early bird"))
	waitFor(t, "datagram held", func() bool { return env.proxy.Stats().Router.Held == 1 })
	resp := c.connect(t, str, env.echo.Addr().String())
	require.Equal(t, 200, resp.StatusCode)
	id, payload := c.recv(t)
	require.Equal(t, str.StreamID(), id)
	require.Equal(t, "early bird", string(payload))
	st := env.proxy.Stats()
	require.Equal(t, uint64(1), st.Router.HeldDelivered)
}

// A datagram for a stream that never comes is dropped after the hold and
// counted.
func TestDatagramForUnknownStreamCounted(t *testing.T) {
	env := startProxy(t, proxy.Config{Hold: engine.HoldOptions{Max: 4, Timeout: 50 * time.Millisecond}})
	c := env.rawTunnelDial(t)
	c.send(t, 400, []byte("nobody home"))
	waitFor(t, "unknown-stream drop", func() bool { return env.proxy.Stats().Router.DroppedUnknown == 1 })
	require.Zero(t, env.proxy.Stats().Router.HeldNow)
}

// Unknown context IDs and oversize payloads are dropped and counted; the
// tunnel keeps working.
func TestUnknownContextAndOversizeDropped(t *testing.T) {
	env := startProxy(t, proxy.Config{MaxDatagramPayload: 100})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, env.echo.Addr().String()).StatusCode)
	id := uint64(str.StreamID())
	b := quicvarint.Append(nil, id/4)
	b = quicvarint.Append(b, 2) // a context ID nobody registered
	require.NoError(t, c.qc.SendDatagram(append(b, "ctx 2"...)))
	c.send(t, str.StreamID(), make([]byte, 101))
	c.send(t, str.StreamID(), make([]byte, 100))
	_, payload := c.recv(t)
	require.Len(t, payload, 100)
	waitFor(t, "drops counted", func() bool {
		st := env.proxy.Stats()
		// ToTarget is counted after the write returns, which can be
		// after the echo is back.
		return st.DropUnknownContext == 1 && st.DropOversize == 1 && st.ToTarget == 1
	})
}

// A quarter stream ID above 2^60-1 is a connection error H3_DATAGRAM_ERROR
// (RFC 9297 §2.1), counted.
func TestQuarterStreamIDTooLargeClosesConnection(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	b := quicvarint.Append(nil, 1<<60)
	require.NoError(t, c.qc.SendDatagram(append(b, 0, 'x')))
	select {
	case <-c.qc.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("connection not closed")
	}
	var appErr *quic.ApplicationError
	require.True(t, errors.As(context.Cause(c.qc.Context()), &appErr), "cause: %v", context.Cause(c.qc.Context()))
	require.Equal(t, quic.ApplicationErrorCode(0x33), appErr.ErrorCode)
	require.Equal(t, uint64(1), env.proxy.Stats().DatagramErrors)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
