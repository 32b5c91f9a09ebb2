package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/proxy"
)

// startTCP serves the TCP carriers (HTTP/2 and HTTP/1.1) of e's proxy on a
// loopback listener of their own and returns its address.
func (e *proxyEnv) startTCP(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- e.proxy.ServeTCP(ln, loopbackCert(t).ServerTLS(),
			proxy.TCPOptions{H2: true, H1: true, AltSvc: proxy.AltSvcH3(4433)})
	}()
	t.Cleanup(func() {
		e.proxy.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTCP: %v", err)
		}
	})
	return ln.Addr().String()
}

// A capsuleTunnel is a raw tunnel on a TCP carrier: capsules written to w
// go to the proxy, the proxy's come out of r.
type capsuleTunnel struct {
	w      io.Writer
	r      *wire.CapsuleReader
	header http.Header
	close  func()
}

func (c *capsuleTunnel) writeDatagram(t testing.TB, payload []byte) {
	t.Helper()
	v := quicvarint.Append(nil, 0)
	_, err := c.w.Write(wire.AppendCapsule(nil, wire.CapsuleDatagram, append(v, payload...)))
	require.NoError(t, err)
}

// readDatagram returns the payload of the next DATAGRAM capsule (context
// ID 0), skipping other capsules.
func (c *capsuleTunnel) readDatagram(t testing.TB) []byte {
	t.Helper()
	for {
		typ, v, err := c.r.Next()
		require.NoError(t, err)
		if typ != wire.CapsuleDatagram {
			continue
		}
		id, payload, err := wire.ParseContextID(v)
		require.NoError(t, err)
		require.Zero(t, id)
		return append([]byte(nil), payload...)
	}
}

// h2Transport is golang.org/x/net/http2's client, which does extended
// CONNECT (a client masqroute did not write).
func h2Transport(t testing.TB) *http2.Transport {
	tc := loopbackCert(t).ClientTLS()
	tc.NextProtos = []string{"h2"}
	tr := &http2.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// openH2 opens a tunnel with extended CONNECT on tr.
func openH2(t testing.TB, tr *http2.Transport, addr, protocol, path string) (*capsuleTunnel, int) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodConnect, "https://"+addr+path, pr)
	require.NoError(t, err)
	req.Header.Set(":protocol", protocol)
	req.Header.Set("Capsule-Protocol", "?1")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	ct := &capsuleTunnel{w: pw, r: wire.NewCapsuleReader(resp.Body, 1<<16, nil), header: resp.Header,
		close: func() { pw.Close(); resp.Body.Close() }}
	t.Cleanup(ct.close)
	return ct, resp.StatusCode
}

// openH1 opens a tunnel with an HTTP/1.1 upgrade on a connection of its own.
func openH1(t testing.TB, addr, protocol, path string) (*capsuleTunnel, int) {
	t.Helper()
	tc := loopbackCert(t).ClientTLS()
	tc.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", addr, tc)
	require.NoError(t, err)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\nCapsule-Protocol: ?1\r\n\r\n",
		path, addr, protocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	ct := &capsuleTunnel{w: conn, r: wire.NewCapsuleReader(br, 1<<16, nil), header: resp.Header,
		close: func() { conn.Close() }}
	t.Cleanup(ct.close)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		require.True(t, strings.EqualFold(resp.Header.Get("Upgrade"), protocol), "Upgrade: %q", resp.Header.Get("Upgrade"))
	}
	return ct, resp.StatusCode
}

func targetPath(target string) string {
	host, port, _ := net.SplitHostPort(target)
	return udpPath(host, port)
}

// golang.org/x/net/http2's client opens a CONNECT-UDP tunnel with extended
// CONNECT and echoes datagrams in DATAGRAM capsules; the response
// advertises HTTP/3 and counts like any tunnel.
func TestH2InteropXNetConnectUDP(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	addr := env.startTCP(t)
	tun, status := openH2(t, h2Transport(t), addr, "connect-udp", targetPath(env.echo.Addr().String()))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "?1", tun.header.Get("Capsule-Protocol"))
	require.Equal(t, `h3=":4433"; ma=86400`, tun.header.Get("Alt-Svc"))
	for i := range 20 {
		msg := fmt.Appendf(nil, "h2 datagram %d", i)
		tun.writeDatagram(t, msg)
		require.Equal(t, msg, tun.readDatagram(t))
	}
	require.Eventually(t, func() bool { st := env.proxy.Stats(); return st.ToClient == 20 && st.ToTarget == 20 },
		5*time.Second, 10*time.Millisecond) // counted just after the send: the echo can be faster
	st := env.proxy.Stats()
	require.EqualValues(t, 20, st.CapsuleDatagrams)
	require.EqualValues(t, 1, st.TunnelsByProtocol["connect-udp"])
}

// The HTTP/1.1 upgrade (RFC 9298 §3.2): 101, then capsules on the
// connection; the absolute request form of the RFC's example works too.
func TestH1UpgradeConnectUDP(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	addr := env.startTCP(t)
	for _, path := range []string{targetPath(env.echo.Addr().String()), "https://" + addr + targetPath(env.echo.Addr().String())} {
		tun, status := openH1(t, addr, "connect-udp", path)
		require.Equal(t, http.StatusSwitchingProtocols, status, path)
		require.Equal(t, "?1", tun.header.Get("Capsule-Protocol"))
		for i := range 5 {
			msg := fmt.Appendf(nil, "h1 datagram %d", i)
			tun.writeDatagram(t, msg)
			require.Equal(t, msg, tun.readDatagram(t))
		}
		tun.close()
	}
	require.Eventually(t, func() bool { return env.proxy.Stats().TunnelsByProtocol["connect-udp"] == 0 },
		5*time.Second, 10*time.Millisecond, "closing the connection ends the tunnel")
}

// Refusals travel as ordinary responses on both carriers, with the same
// statuses as over HTTP/3.
func TestTCPCarrierRefusals(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	addr := env.startTCP(t)
	tr := h2Transport(t)
	for _, tc := range []struct {
		proto, path string
		status      int
	}{
		{"connect-udp", "/nowhere", http.StatusNotFound},
		{"connect-udp", "/.well-known/masque/udp/10.0.0.1/53/", http.StatusForbidden},
		{"connect-udp", "/.well-known/masque/udp/127.0.0.1/0/", http.StatusBadRequest},
		{"websocket", "/", http.StatusNotImplemented},
	} {
		_, status := openH2(t, tr, addr, tc.proto, tc.path)
		require.Equal(t, tc.status, status, "h2 %s %s", tc.proto, tc.path)
		_, status = openH1(t, addr, tc.proto, tc.path)
		require.Equal(t, tc.status, status, "h1 %s %s", tc.proto, tc.path)
	}
}

// A client that stops reading one HTTP/2 stream backs it up (flow control):
// its replies are dropped and counted as return_stream_blocked, nothing is
// buffered without bound, and another tunnel of the same connection goes
// on working (the connection's sender never waits on the stalled stream).
//
// Go's HTTP/2 server queues a stream's WINDOW_UPDATE behind its own
// blocked DATA, so once the replies stall, the client's writes on that
// stream stall too: the writer below runs on its own goroutine, bounded in
// count, and is released by closing its pipe.
func TestH2SlowReaderDropsAndCounts(t *testing.T) {
	env := startProxy(t, proxy.Config{RateTunnelDatagrams: -1, RateTunnelBytes: -1, RateConnDatagrams: -1,
		RateConnBytes: -1, MaxAmplification: -1})
	addr := env.startTCP(t)
	tr := h2Transport(t)
	stalled, status := openH2(t, tr, addr, "connect-udp", targetPath(env.echo.Addr().String()))
	require.Equal(t, http.StatusOK, status)
	live, status := openH2(t, tr, addr, "connect-udp", targetPath(env.echo.Addr().String()))
	require.Equal(t, http.StatusOK, status)

	// x/net's client grants a stream 4 MiB: send several times that in
	// echoes and never read them.
	const most = 20000
	var sent atomic.Int64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		v := wire.AppendCapsule(nil, wire.CapsuleDatagram, make([]byte, 1201)) // context ID 0 + 1200 bytes
		for range most {
			if _, err := stalled.w.Write(v); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return env.proxy.Stats().DropReturnBlocked > 0 },
		20*time.Second, 10*time.Millisecond, "replies to a stalled stream are dropped and counted")
	time.Sleep(300 * time.Millisecond) // the last echoes settle
	st := env.proxy.Stats()
	require.Zero(t, st.DropReturnQueueFull+st.DropReturnSendError, "the sender never stalled: %+v", st)
	// What went toward the client is bounded by its window and the TCP
	// buffers, not by what the target sent.
	require.Less(t, st.ToClient*1200, uint64(16<<20), "delivered to a client that does not read")
	t.Logf("sent %d, to target %d, to client %d, dropped (stream blocked) %d", sent.Load(), st.ToTarget, st.ToClient, st.DropReturnBlocked)

	msg := []byte("still flowing")
	live.writeDatagram(t, msg)
	require.Equal(t, msg, live.readDatagram(t))
	stalled.close()
	<-writerDone
}

// CONNECT-IP over HTTP/2 and HTTP/1.1: address assignment and a UDP echo
// through the userspace network, as over HTTP/3.
func TestTCPCarriersConnectIP(t *testing.T) {
	env := startIPProxy(t, 1500)
	addr := env.startTCP(t)
	tr := h2Transport(t)
	open := map[string]func() (*capsuleTunnel, int){
		"h2": func() (*capsuleTunnel, int) { return openH2(t, tr, addr, "connect-ip", "/vpn") },
		"h1": func() (*capsuleTunnel, int) { return openH1(t, addr, "connect-ip", "/vpn") },
	}
	for name, o := range open {
		t.Run(name, func(t *testing.T) {
			tun, status := o()
			require.Contains(t, []int{200, 101}, status)
			typ, value, err := tun.r.Next()
			require.NoError(t, err)
			require.EqualValues(t, wire.CapsuleAddressAssign, typ)
			assigned, err := wire.ParseAddressAssign(value)
			require.NoError(t, err)
			var a4 netip.Addr
			for _, a := range assigned {
				if a.Prefix.Addr().Is4() {
					a4 = a.Prefix.Addr()
				}
			}
			require.True(t, a4.IsValid())
			pkt := ippkt.BuildUDP(netip.AddrPortFrom(a4, 40000), netip.AddrPortFrom(env.host4, 7), []byte("ip over "+name), 64)
			tun.writeDatagram(t, pkt)
			h, err := ippkt.Parse(tun.readDatagram(t))
			require.NoError(t, err)
			require.Equal(t, env.host4, h.Src)
			require.Equal(t, a4, h.Dst)
		})
	}
}

// One accounting for every carrier: the same datagrams count the same
// whichever carrier brought them (HTTP/3 with QUIC datagrams, HTTP/3 with
// capsules aside, HTTP/2, HTTP/1.1).
func TestCarrierAccountingSame(t *testing.T) {
	const n = 25
	msg := []byte("counted the same way")
	type counts struct{ toTarget, toTargetBytes, toClient, toClientBytes, opened uint64 }
	snapshot := func(p *proxy.Proxy) counts {
		st := p.Stats()
		return counts{st.ToTarget, st.ToTargetBytes, st.ToClient, st.ToClientBytes, st.OpenedByProtocol["connect-udp"]}
	}
	got := map[string]counts{}
	var mu sync.Mutex
	run := func(name string, exchange func(env *proxyEnv, addr string)) {
		env := startProxy(t, proxy.Config{})
		addr := env.startTCP(t)
		exchange(env, addr)
		require.Eventually(t, func() bool { c := snapshot(env.proxy); return c.toClient == n && c.toTarget == n },
			5*time.Second, 10*time.Millisecond)
		mu.Lock()
		got[name] = snapshot(env.proxy)
		mu.Unlock()
	}
	run("h3", func(env *proxyEnv, _ string) {
		u := dialUDP(t, env.dial(t), env.echo.Addr().String())
		for range n {
			echoOnce(t, u, msg)
		}
	})
	tcp := func(tun *capsuleTunnel) {
		for range n {
			tun.writeDatagram(t, msg)
			require.Equal(t, msg, tun.readDatagram(t))
		}
	}
	run("h2", func(env *proxyEnv, addr string) {
		tun, _ := openH2(t, h2Transport(t), addr, "connect-udp", targetPath(env.echo.Addr().String()))
		tcp(tun)
	})
	run("h1", func(env *proxyEnv, addr string) {
		tun, _ := openH1(t, addr, "connect-udp", targetPath(env.echo.Addr().String()))
		tcp(tun)
	})
	want := counts{n, n * uint64(len(msg)), n, n * uint64(len(msg)), 1}
	for name, c := range got {
		require.Equal(t, want, c, name)
	}
}

// countingConn counts the bytes written on it: what a client sent on the
// wire (TLS records included).
type countingConn struct {
	net.Conn
	wrote *atomic.Uint64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.wrote.Add(uint64(n))
	return n, err
}

// dialCounting opens a TLS connection with alpn whose written bytes go to
// wrote. It may run on a goroutine other than the test's.
func dialCounting(addr, alpn string, tc *tls.Config, wrote *atomic.Uint64) (*tls.Conn, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc = tc.Clone()
	tc.NextProtos = []string{alpn}
	tc.ServerName, _, _ = net.SplitHostPort(addr)
	conn := tls.Client(countingConn{raw, wrote}, tc)
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// Over TCP the amplification bound counts the bytes received on the TCP
// connection: empty DATAGRAM capsules (3 bytes each) do not become a flood
// of 28-byte packets at the target, over HTTP/2 or HTTP/1.1.
func TestNoAmplificationEmptyCapsulesTCP(t *testing.T) {
	for _, carrier := range []string{"h2", "h1"} {
		t.Run(carrier, func(t *testing.T) {
			sink := newUDPSink(t)
			env := startProxy(t, proxy.Config{RingSize: 1024, MaxCapsule: 1 << 20})
			addr := env.startTCP(t)
			var wrote atomic.Uint64
			var tun *capsuleTunnel
			var status int
			if carrier == "h1" {
				conn, err := dialCounting(addr, "http/1.1", loopbackCert(t).ClientTLS(), &wrote)
				require.NoError(t, err)
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", targetPath(sink.addr()), addr)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				require.NoError(t, err)
				tun, status = &capsuleTunnel{w: conn, close: func() { conn.Close() }}, resp.StatusCode
				t.Cleanup(tun.close)
				require.Equal(t, http.StatusSwitchingProtocols, status)
			} else {
				tr := h2Transport(t)
				tc := loopbackCert(t).ClientTLS()
				tr.DialTLSContext = func(context.Context, string, string, *tls.Config) (net.Conn, error) {
					return dialCounting(addr, "h2", tc, &wrote)
				}
				tun, status = openH2(t, tr, addr, "connect-udp", targetPath(sink.addr()))
				require.Equal(t, http.StatusOK, status)
			}
			const bursts, burst = 300, 100
			chunk := bytes.Repeat([]byte{0x00, 0x01, 0x00}, burst) // DATAGRAM, length 1, context 0
			start := time.Now()
			for i := range bursts {
				_, err := tun.w.Write(chunk)
				require.NoError(t, err)
				keepUp(t, env, func(st proxy.Stats) uint64 { return st.CapsuleDatagrams }, uint64((i+1)*burst))
			}
			checkAmplification(t, env, sink, wrote.Load(), time.Since(start))
		})
	}
}
