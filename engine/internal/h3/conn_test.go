package h3

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })

func TestSettingsSeenByStockClient(t *testing.T) {
	for _, datagrams := range []bool{true, false} {
		t.Run(map[bool]string{true: "datagrams", false: "no-datagrams"}[datagrams], func(t *testing.T) {
			srv := startServer(t, Config{Handler: okHandler, Datagrams: datagrams,
				ExtraSettings: []wire.Setting{{ID: 0x1f*3 + 0x21, Value: 7}}})
			cc, sc := dialClient(t, srv)
			select {
			case <-cc.ReceivedSettings():
			case <-time.After(waitShort):
				t.Fatal("client got no SETTINGS")
			}
			s := cc.Settings()
			require.True(t, s.EnableExtendedConnect)
			require.Equal(t, datagrams, s.EnableDatagrams)
			require.Equal(t, uint64(7), s.Other[0x1f*3+0x21])

			// The client's SETTINGS reach the server too.
			select {
			case <-sc.PeerSettings():
			case <-time.After(waitShort):
				t.Fatal("server got no SETTINGS")
			}
			require.True(t, sc.Settings().Datagram)
		})
	}
}

func TestSettingsBeforeArrival(t *testing.T) {
	c := &Conn{peerSettingsDone: make(chan struct{})}
	require.Equal(t, wire.Settings{}, c.Settings())
}

func TestNewConnConfigErrors(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	dialQUIC(t, srv, false)
	sc := srv.next(t)
	// A second Conn on the same QUIC connection is only for the checks:
	// each returns before opening a stream.
	for name, cfg := range map[string]*Config{
		"nil":               nil,
		"no handler":        {},
		"qpack capacity":    {Handler: okHandler, ExtraSettings: []wire.Setting{{ID: wire.SettingQPACKMaxTableCapacity, Value: 4096}}},
		"datagram in extra": {Handler: okHandler, ExtraSettings: []wire.Setting{{ID: wire.SettingH3Datagram, Value: 1}}},
		"http2 setting":     {Handler: okHandler, ExtraSettings: []wire.Setting{{ID: 0x02, Value: 1}}},
		"repeated":          {Handler: okHandler, ExtraSettings: []wire.Setting{{ID: 0x40, Value: 1}, {ID: 0x40, Value: 2}}},
		"too large":         {Handler: okHandler, ExtraSettings: []wire.Setting{{ID: 1 << 62, Value: 1}}},
		"nil conn context":  {Handler: okHandler, ConnContext: func(context.Context) context.Context { return nil }},
	} {
		_, err := NewConn(sc.qc, cfg)
		require.Error(t, err, name)
	}

	// Datagrams need QUIC datagrams on this side.
	ln := listen(t, &quic.Config{})
	go func() {
		_, pool := testCert(t)
		qc, err := quic.DialAddr(context.Background(), ln.Addr().String(),
			&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h3"}}, &quic.Config{EnableDatagrams: true})
		if err == nil {
			<-qc.Context().Done()
		}
	}()
	nd, err := ln.Accept(context.Background())
	require.NoError(t, err)
	_, err = NewConn(nd, &Config{Handler: okHandler, Datagrams: true})
	require.Error(t, err)
	nd.CloseWithError(0, "")
}

func TestServeTwice(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	dialQUIC(t, srv, false)
	sc := srv.next(t)
	require.Eventually(t, sc.serving.Load, waitShort, time.Millisecond)
	require.Error(t, sc.Serve())
}

// TestServeReturnsOnClientClose: when the client closes the connection,
// a handler blocked on its context is released, and Serve returns nil
// (H3_NO_ERROR) once it has returned.
func TestServeReturnsOnClientClose(t *testing.T) {
	entered := make(capture[struct{}], 1)
	srv := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})})
	cc, sc := dialClient(t, srv)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost/block", nil)
		rsp, err := cc.RoundTrip(req)
		if err == nil {
			rsp.Body.Close()
		}
	}()
	entered.get(t)
	require.NoError(t, cc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeNoError), ""))
	require.NoError(t, sc.wait(t))
}

// TestServeReturnsLocalError: Serve reports the close cause of a
// connection closed with an error by the caller.
func TestServeReturnsLocalError(t *testing.T) {
	srv := startServer(t, Config{Handler: okHandler})
	cc, sc := dialClient(t, srv)
	_, body := get(t, cc, "/")
	require.Equal(t, "ok", body)
	require.NoError(t, sc.CloseWithError(wire.ErrCodeInternalError, "bye"))
	var ae *quic.ApplicationError
	require.ErrorAs(t, sc.wait(t), &ae)
	require.EqualValues(t, wire.ErrCodeInternalError, ae.ErrorCode)
	require.Error(t, sc.Context().Err())
}

// TestDatagramsNotConsumed: Conn never reads the connection's datagrams;
// whoever calls ReceiveDatagram gets every one of them.
func TestDatagramsNotConsumed(t *testing.T) {
	gotStream := make(capture[quic.StreamID], 1)
	release := make(chan struct{})
	srv := startServer(t, Config{Datagrams: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := RequestStream(r)
		if !ok {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Capsule-Protocol", "?1")
		w.WriteHeader(http.StatusOK)
		gotStream <- s.StreamID()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})})
	cc, sc := dialClient(t, srv)
	rs := openConnectUDP(t, cc)
	id := gotStream.get(t)
	<-sc.PeerSettings()
	require.True(t, sc.Settings().Datagram)

	const n = 20
	for i := range n {
		require.NoError(t, rs.SendDatagram([]byte{byte(i)}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	for range n {
		b, err := sc.qc.ReceiveDatagram(ctx)
		require.NoError(t, err)
		sid, payload, err := wire.ParseDatagram(b)
		require.NoError(t, err)
		require.EqualValues(t, id, sid)
		require.Len(t, payload, 1)
	}
	close(release)
}

// openConnectUDP opens an extended CONNECT (connect-udp) request stream
// as masque-go does and checks the 200.
func openConnectUDP(t *testing.T, cc *http3.ClientConn) *http3.RequestStream {
	t.Helper()
	select {
	case <-cc.ReceivedSettings():
	case <-time.After(waitShort):
		t.Fatal("no SETTINGS")
	}
	rs, err := cc.OpenRequestStream(context.Background())
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodConnect, "https://localhost:4433/masque/udp/192.0.2.1/443/", nil)
	require.NoError(t, err)
	req.Proto = "connect-udp"
	req.Host = "localhost:4433"
	req.Header.Set("Capsule-Protocol", "?1")
	require.NoError(t, rs.SendRequestHeader(req))
	rsp, err := rs.ReadResponse()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, rsp.StatusCode)
	require.Equal(t, "?1", rsp.Header.Get("Capsule-Protocol"))
	return rs
}
