package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/masqroute/masqroute/engine/proxy"
)

// h2Connect opens a classic CONNECT to target on cc and returns the
// stream's writer (the request body) and response.
func h2Connect(cc *http2.ClientConn, addr, target string) (*io.PipeWriter, *http.Response, error) {
	pr, pw := io.Pipe()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: addr}, Host: target,
		Header: http.Header{}, Body: pr}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, nil, err
	}
	return pw, resp, nil
}

// TestDrainTCPCarriers: Shutdown with a live HTTP/2 TCP tunnel and an idle
// HTTP/1.1 connection. The HTTP/2 connection gets GOAWAY (the client marks
// it closing and sends nothing new on it), the idle HTTP/1.1 connection is
// closed, the listener takes no new connections, and the live tunnel goes
// on carrying bytes until the client ends it; then Shutdown returns, well
// within its deadline, with nothing aborted.
func TestDrainTCPCarriers(t *testing.T) {
	env := startProxy(t, proxy.Config{ConnectTCP: true})
	addr := env.startTCP(t)
	target := tcpServer(t, tcpEcho)

	// HTTP/2: one connection, a live tunnel on it.
	tc := loopbackCert(t).ClientTLS()
	tc.NextProtos = []string{"h2"}
	nc, err := tls.Dial("tcp", addr, tc)
	require.NoError(t, err)
	cc, err := (&http2.Transport{}).NewClientConn(nc)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	pw, resp, err := h2Connect(cc, addr, target)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	echo := func(msg string) {
		t.Helper()
		_, err := pw.Write([]byte(msg))
		require.NoError(t, err)
		b := make([]byte, len(msg))
		_, err = io.ReadFull(resp.Body, b)
		require.NoError(t, err)
		require.Equal(t, msg, string(b))
	}
	echo("before the drain")

	// HTTP/1.1: a keep-alive connection, idle after one request.
	tc1 := loopbackCert(t).ClientTLS()
	tc1.NextProtos = []string{"http/1.1"}
	h1, err := tls.Dial("tcp", addr, tc1)
	require.NoError(t, err)
	t.Cleanup(func() { h1.Close() })
	fmt.Fprintf(h1, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	br := bufio.NewReader(h1)
	r1, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	io.Copy(io.Discard, r1.Body)
	r1.Body.Close()
	require.False(t, r1.Close, "the connection stays open")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	start := time.Now()
	go func() { drained <- env.proxy.Shutdown(ctx) }()

	require.Eventually(t, func() bool { return cc.State().Closing }, 5*time.Second, 5*time.Millisecond,
		"the HTTP/2 connection got GOAWAY")
	_, _, err = h2Connect(cc, addr, target)
	require.Error(t, err, "no new request on a connection that got GOAWAY")

	h1.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle HTTP/1.1 connection is closed")

	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "the listener is closed")

	select {
	case err := <-drained:
		t.Fatalf("Shutdown returned with a tunnel live: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	echo("during the drain")
	require.NoError(t, pw.Close()) // END_STREAM: the echo target closes its side
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Empty(t, rest)

	select {
	case err := <-drained:
		require.NoError(t, err, "the tunnel ended before the deadline")
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the tunnel ended")
	}
	t.Logf("drained in %v", time.Since(start))
	st := env.proxy.Stats().TCP
	require.Zero(t, st.Aborted)
	require.Equal(t, uint64(1), st.ClientFIN)
	require.Equal(t, uint64(1), st.TargetFIN)
}
