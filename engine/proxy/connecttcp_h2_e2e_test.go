package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// CONNECT for TCP over HTTP/2 (RFC 9113 §8.5). The copy at line rate and
// the slow reader run over both carriers in connecttcp_e2e_test.go.

// TestConnectTCPHalfCloseH2: the client's END_STREAM reaches the target as
// a FIN while the target can still answer; the target's FIN ends the
// response with END_STREAM, and (net/http's HTTP/2 server cannot go on
// reading after that) ends the client's side too: the target then sees
// EOF, nothing is counted as aborted.
func TestConnectTCPHalfCloseH2(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	c := env.dialOver(t, client.CarrierH2)

	t.Run("client first", func(t *testing.T) { clientFINFirst(t, c) })

	t.Run("target first", func(t *testing.T) {
		rest := make(chan error, 1)
		target := tcpServer(t, func(tc *net.TCPConn) {
			tc.Write([]byte("hi"))
			tc.CloseWrite()
			_, err := io.ReadAll(tc) // the proxy ends this side too
			rest <- err
		})
		tc := dialTCP(t, c, target)
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(tc) // to the target's FIN: END_STREAM
		require.NoError(t, err)
		require.Equal(t, "hi", string(b))
		select {
		case err := <-rest:
			require.NoError(t, err, "the target's side ends with a FIN, not a reset")
		case <-time.After(5 * time.Second):
			t.Fatal("the target's read side stayed open after its FIN")
		}
	})
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Live == 0 }, 5*time.Second, 10*time.Millisecond)
	st := env.proxy.Stats().TCP
	require.Equal(t, uint64(1), st.ClientFIN)
	require.Equal(t, uint64(2), st.TargetFIN)
	require.Zero(t, st.Aborted)
	require.Equal(t, uint64(2), st.Opened)
	require.EqualValues(t, 2, env.proxy.Stats().TunnelsOpened)
}

// TestConnectTCPRefusalsH2: the switch, the policy, the token, Authorize
// and the tunnel limit answer over HTTP/2 as over HTTP/3, with Proxy-Status.
func TestConnectTCPRefusalsH2(t *testing.T) {
	target := tcpServer(t, tcpEcho)
	refusal := func(t *testing.T, cfg proxy.Config, target string, hdr http.Header) *client.ProxyError {
		t.Helper()
		env := startProxy(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, env.startTCP(t), &client.Config{TLSConfig: loopbackCert(t).ClientTLS(),
			Carrier: client.CarrierH2, Header: hdr})
		require.NoError(t, err)
		defer c.Close()
		tc, err := c.DialTCP(ctx, target)
		if err == nil {
			tc.Close()
		}
		pe, ok := errors.AsType[*client.ProxyError](err)
		require.True(t, ok, "%v", err)
		return pe
	}
	t.Run("disabled", func(t *testing.T) {
		require.Equal(t, http.StatusNotImplemented, refusal(t, proxy.Config{}, target, nil).Status)
	})
	t.Run("policy", func(t *testing.T) {
		pe := refusal(t, proxy.Config{ConnectTCP: true}, "10.1.2.3:80", nil)
		require.Equal(t, http.StatusForbidden, pe.Status)
		require.Contains(t, pe.ProxyStatus, "error=destination_ip_prohibited")
	})
	t.Run("bad authority", func(t *testing.T) {
		require.Equal(t, http.StatusBadRequest, refusal(t, proxy.Config{ConnectTCP: true}, "127.0.0.1:0", nil).Status)
	})
	t.Run("token", func(t *testing.T) {
		tokens, err := proxy.LoadTokenFile(writeTokens(t, proxy.HashToken("good-token")))
		require.NoError(t, err)
		cfg := proxy.Config{ConnectTCP: true, Tokens: tokens}
		pe := refusal(t, cfg, target, http.Header{"Proxy-Authorization": {"Bearer wrong-token"}})
		require.Equal(t, http.StatusProxyAuthRequired, pe.Status)
		require.Contains(t, pe.ProxyStatus, "error=http_request_denied")
	})
	t.Run("authorize", func(t *testing.T) {
		cfg := proxy.Config{ConnectTCP: true, Authorize: func(*http.Request) error { return errors.New("no") }}
		require.Equal(t, http.StatusForbidden, refusal(t, cfg, target, nil).Status)
	})
	t.Run("tunnel limit", func(t *testing.T) {
		env := startProxy(t, proxy.Config{ConnectTCP: true, MaxTunnelsPerConn: 1})
		c := env.dialOver(t, client.CarrierH2)
		dialTCP(t, c, target)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.DialTCP(ctx, target)
		pe, ok := errors.AsType[*client.ProxyError](err)
		require.True(t, ok, "%v", err)
		require.Equal(t, http.StatusServiceUnavailable, pe.Status)
		// A UDP tunnel counts against the same limit.
		_, err = c.DialUDP(ctx, env.echo.Addr().String())
		pe, ok = errors.AsType[*client.ProxyError](err)
		require.True(t, ok, "%v", err)
		require.Equal(t, http.StatusServiceUnavailable, pe.Status)
	})
}

// golang.org/x/net/http2's client (a client masqroute did not write) opens
// a classic CONNECT over HTTP/2: :method CONNECT and :authority only. The
// proxy answers 200 and the stream carries the bytes both ways.
func TestH2InteropXNetConnectTCP(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	addr := env.startTCP(t)
	target := tcpServer(t, func(tc *net.TCPConn) {
		b, err := io.ReadAll(tc)
		if err != nil {
			return
		}
		tc.Write([]byte(strings.ToUpper(string(b))))
		tc.CloseWrite()
	})
	pr, pw := io.Pipe()
	// The URL says where the connection goes (the proxy); Host is the
	// CONNECT's :authority (the target).
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: addr}, Host: target,
		Header: http.Header{}, Body: pr}
	resp, err := h2Transport(t).RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `h3=":4433"; ma=86400`, resp.Header.Get("Alt-Svc"))
	_, err = pw.Write([]byte("through http2"))
	require.NoError(t, err)
	require.NoError(t, pw.Close()) // END_STREAM
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "THROUGH HTTP2", string(b))
	require.Eventually(t, func() bool { return env.proxy.Stats().TCP.Live == 0 }, 5*time.Second, 10*time.Millisecond)
	st := env.proxy.Stats().TCP
	require.Equal(t, uint64(len("through http2")), st.ToTargetBytes)
	require.Equal(t, uint64(len("THROUGH HTTP2")), st.ToClientBytes)
	require.Equal(t, uint64(1), st.ClientFIN)
	require.Equal(t, uint64(1), st.TargetFIN)
}

// TestConnectTCPDeadlineH2: over HTTP/2 a read deadline that passes ends
// the tunnel: the blocked Read fails with os.ErrDeadlineExceeded, and the
// proxy sees the reset and closes the target's connection.
func TestConnectTCPDeadlineH2(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	targetDone := make(chan struct{})
	target := tcpServer(t, func(tc *net.TCPConn) {
		defer close(targetDone)
		io.Copy(io.Discard, tc) // silent, until the proxy closes it
	})
	tc := dialTCP(t, env.dialOver(t, client.CarrierH2), target)
	start := time.Now()
	require.NoError(t, tc.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err := tc.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)
	select {
	case <-targetDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the target's connection stayed open after the tunnel ended")
	}
}
