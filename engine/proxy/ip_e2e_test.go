package proxy_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	connectip "github.com/quic-go/connect-ip-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/yosida95/uritemplate/v3"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/internal/wire"
	"github.com/masqroute/masqroute/engine/metrics"
	"github.com/masqroute/masqroute/engine/packetio"
	"github.com/masqroute/masqroute/engine/proxy"
)

// ipEnv is a proxy serving CONNECT-IP into a userspace network whose host
// (192.0.2.1, 2001:db8::1) answers ICMP echo and echoes UDP on port 7.
type ipEnv struct {
	*proxyEnv
	ns           *packetio.Netstack
	host4, host6 netip.Addr
}

func startIPProxy(t *testing.T, mtu int) *ipEnv {
	t.Helper()
	ns, err := packetio.NewNetstack(packetio.NetstackConfig{MTU: mtu})
	require.NoError(t, err)
	env := startProxy(t, proxy.Config{IP: &proxy.IPConfig{
		Device:    ns,
		Templates: []string{proxy.DefaultIPTemplate, "https://{authority}/vpn"},
	}})
	hosts := ns.HostAddrs()
	return &ipEnv{proxyEnv: env, ns: ns, host4: hosts[0], host6: hosts[1]}
}

// clientLog captures the standard logger, where connect-ip-go reports the
// packets it drops; a test fails if the client dropped any.
type clientLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *clientLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func captureClientLog(t *testing.T) *clientLog {
	l := &clientLog{}
	prev := log.Writer()
	log.SetOutput(l)
	t.Cleanup(func() {
		log.SetOutput(prev)
		l.mu.Lock()
		defer l.mu.Unlock()
		if strings.Contains(l.buf.String(), "dropping") {
			t.Errorf("connect-ip-go dropped proxied packets:\n%s", l.buf.String())
		}
	})
	return l
}

// dialIP opens a CONNECT-IP tunnel with connect-ip-go's client (which only
// sends templates without variables) and waits for its addresses and
// routes.
func (e *ipEnv) dialIP(t *testing.T) (*connectip.Conn, netip.Addr, netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr := &connectip.Transport{TLSClientConfig: clientTLS(t)}
	tmpl := uritemplate.MustNew("https://" + e.addr + "/vpn")
	req, err := connectip.NewRequest(ctx, tmpl)
	require.NoError(t, err)
	conn, rsp, err := tr.Dial(req)
	require.NoError(t, err)
	require.Equal(t, 200, rsp.StatusCode)
	t.Cleanup(func() { conn.Close() })
	assigned, err := conn.ReceiveAddressAssignment(ctx)
	require.NoError(t, err)
	var a4, a6 netip.Addr
	for _, a := range assigned {
		require.Zero(t, a.RequestID, "unsolicited")
		if a.IPPrefix.Addr().Is4() {
			a4 = a.IPPrefix.Addr()
			require.True(t, proxy.DefaultIPPool4.Contains(a4))
			require.Equal(t, 32, a.IPPrefix.Bits())
		} else {
			a6 = a.IPPrefix.Addr()
			require.True(t, proxy.DefaultIPPool6.Contains(a6))
		}
	}
	require.True(t, a4.IsValid() && a6.IsValid(), "assigned %v", assigned)
	routes, err := conn.Routes(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, routes)
	return conn, a4, a6
}

// exchange writes pkt and returns the next packet the tunnel delivers.
func exchange(t *testing.T, conn *connectip.Conn, pkt []byte) ippkt.Header {
	t.Helper()
	icmp, err := conn.WritePacket(pkt)
	require.NoError(t, err)
	require.Nil(t, icmp, "the client refused to send the packet")
	buf := make([]byte, 2000)
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() { n, err := conn.ReadPacket(buf); res <- result{n, err} }()
	select {
	case r := <-res:
		require.NoError(t, r.err)
		h, err := ippkt.Parse(buf[:r.n])
		require.NoError(t, err)
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("no packet came back")
	}
	return ippkt.Header{}
}

// connect-ip-go's client talks to masqroute: address assignment, routes,
// ICMP and UDP echo over IPv4 and IPv6 to a host behind the proxy, with the
// Hop Limit decremented on the way back as a router does (RFC 9484 §4.3).
func TestConnectIPInterop(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 0)
	conn, a4, a6 := env.dialIP(t)

	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{{"v4", a4, env.host4}, {"v6", a6, env.host6}} {
		t.Run("icmp-echo-"+tc.name, func(t *testing.T) {
			req := ippkt.BuildICMPEcho(tc.src, tc.dst, 7, 1, []byte("ping through masqroute"), 64, true)
			h := exchange(t, conn, req)
			require.Equal(t, tc.dst, h.Src)
			require.Equal(t, tc.src, h.Dst)
			require.Equal(t, uint8(63), h.HopLimit, "the host sent 64; the proxy decrements")
		})
		t.Run("udp-echo-"+tc.name, func(t *testing.T) {
			req := ippkt.BuildUDP(netip.AddrPortFrom(tc.src, 40000), netip.AddrPortFrom(tc.dst, 7), []byte("udp through masqroute"), 64)
			h := exchange(t, conn, req)
			require.Equal(t, tc.dst, h.Src)
			require.Equal(t, uint8(17), h.Proto)
			require.Equal(t, uint8(63), h.HopLimit)
		})
	}
	// The proxy counts a packet to the client after SendDatagram returns:
	// the client may read the last reply before the counter moves.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := env.proxy.Stats()
		assert.Equal(ct, int64(1), st.TunnelsByProtocol["connect-ip"])
		assert.GreaterOrEqual(ct, st.ToTarget, uint64(4))
		assert.GreaterOrEqual(ct, st.ToClient, uint64(4))
	}, 5*time.Second, 10*time.Millisecond)
}

// RequestAddresses gets its answer with the same request ID.
func TestConnectIPAddressRequest(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 0)
	conn, a4, _ := env.dialIP(t)
	ids, err := conn.RequestAddresses([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	assigned, err := conn.ReceiveAddressAssignment(ctx)
	require.NoError(t, err)
	var answered bool
	for _, a := range assigned {
		if a.RequestID == ids[0] {
			answered = true
			require.Equal(t, netip.PrefixFrom(a4, 32), a.IPPrefix)
		}
	}
	require.True(t, answered, "no assignment carries request ID %d: %v", ids[0], assigned)
	require.Equal(t, uint64(1), env.proxy.Stats().IPAddressRequests)
}

// A packet larger than the network's MTU is answered with ICMP Packet Too
// Big (RFC 9484 §10.1).
func TestConnectIPPacketTooBig(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 1280) // the network behind the proxy carries 1280
	conn, _, a6 := env.dialIP(t)
	req := ippkt.BuildUDP(netip.AddrPortFrom(a6, 40000), netip.AddrPortFrom(env.host6, 7), make([]byte, 1300-48), 64)
	require.Len(t, req, 1300)
	h := exchange(t, conn, req)
	require.Equal(t, uint8(58), h.Proto, "ICMPv6")
	require.Equal(t, a6, h.Dst)
	// Counted once the sender's SendDatagram returns, which can be after
	// the client read the reply.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := env.proxy.Stats()
		assert.Equal(ct, uint64(1), st.DropOversize)
		assert.Equal(ct, uint64(1), st.ICMPToClient)
	}, 5*time.Second, time.Millisecond)
}

// Closing the client's tunnel tears it down in the router and frees its
// addresses.
func TestConnectIPCloseFreesAddresses(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 0)
	conn, _, _ := env.dialIP(t)
	require.Equal(t, 2, env.proxy.Stats().IPAddressesInUse)
	require.NoError(t, conn.Close())
	waitFor(t, "tunnel torn down", func() bool {
		st := env.proxy.Stats()
		return st.Tunnels == 0 && st.Router.Active == 0 && st.IPAddressesInUse == 0
	})
}

// rawIP opens a CONNECT-IP tunnel with a raw HTTP/3 client, for packets
// connect-ip-go would refuse to send, and returns the stream and the IPv4
// address assigned.
func (e *ipEnv) rawIP(t *testing.T, path string) (*rawTunnelConn, *http3.RequestStream, netip.Addr, netip.Addr) {
	t.Helper()
	c := e.rawTunnelDial(t)
	str, a4, a6 := e.rawIPOn(t, c, path)
	return c, str, a4, a6
}

// rawIPOn is rawIP on the connection c.
func (e *ipEnv) rawIPOn(t *testing.T, c *rawTunnelConn, path string) (*http3.RequestStream, netip.Addr, netip.Addr) {
	t.Helper()
	str := c.open(t)
	u, err := url.Parse("https://" + e.addr + path)
	require.NoError(t, err)
	req := &http.Request{Method: http.MethodConnect, Proto: "connect-ip", Host: u.Host, URL: u,
		Header: http.Header{"Capsule-Protocol": {"?1"}}}
	require.NoError(t, str.SendRequestHeader(req))
	resp, err := str.ReadResponse()
	require.NoError(t, err)
	if resp.StatusCode != 200 {
		return str, netip.Addr{}, netip.Addr{}
	}
	// The first capsule is the unsolicited ADDRESS_ASSIGN.
	cr := wire.NewCapsuleReader(str, 1<<16, nil)
	typ, value, err := cr.Next()
	require.NoError(t, err)
	require.Equal(t, uint64(wire.CapsuleAddressAssign), typ)
	assigned, err := wire.ParseAddressAssign(value)
	require.NoError(t, err)
	var a4, a6 netip.Addr
	for _, a := range assigned {
		if a.Prefix.Addr().Is4() {
			a4 = a.Prefix.Addr()
		} else {
			a6 = a.Prefix.Addr()
		}
	}
	return str, a4, a6
}

// goroutines counts every goroutine, and those serving a tunnel's request
// (reading its capsules).
func goroutines() (all, requests int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "proxy.(*Proxy).readCapsules(") {
			requests++
		}
	}
	return runtime.NumGoroutine(), requests
}

// A CONNECT-IP tunnel has no goroutine of its own: 20 more tunnels on a
// connection add their 20 request goroutines (which read the tunnels'
// capsules) and nothing else. Return traffic goes through the
// connection's sender (checked with a packet to each tunnel).
func TestConnectIPNoGoroutinePerTunnel(t *testing.T) {
	env := startIPProxy(t, 0)
	c := env.rawTunnelDial(t)
	_, first, _ := env.rawIPOn(t, c, "/vpn") // the connection's goroutines start
	waitFor(t, "first tunnel", func() bool { return env.proxy.Stats().Tunnels == 1 })
	time.Sleep(50 * time.Millisecond)
	base, baseReqs := goroutines()
	require.Equal(t, 1, baseReqs)

	const more = 20
	addrs := []netip.Addr{first}
	for range more {
		_, a4, _ := env.rawIPOn(t, c, "/vpn")
		require.True(t, a4.IsValid())
		addrs = append(addrs, a4)
	}
	waitFor(t, "tunnels open", func() bool { return env.proxy.Stats().Tunnels == 1+more })
	// Goroutines that end on their own (a session's Start, an earlier
	// test's) may linger a little: wait until no goroutine besides the
	// request goroutines is left over the base count.
	var all, reqs int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if all, reqs = goroutines(); all-reqs <= base-baseReqs || time.Now().After(deadline) {
			break
		}
	}
	require.LessOrEqual(t, all-reqs, base-baseReqs, "goroutines besides the request goroutines: %d → %d (requests %d → %d)",
		base, all, baseReqs, reqs)
	require.Equal(t, more, reqs-baseReqs)
	t.Logf("%d CONNECT-IP tunnels: %d goroutines (%+d for %d tunnels, %d of them request goroutines)",
		1+more, all, all-base, more, reqs-baseReqs)

	// Every tunnel's return path works: a packet to each reaches the client.
	for _, a := range addrs {
		uc, err := env.ns.Net().DialUDPAddrPort(netip.AddrPortFrom(env.host4, 9999), netip.AddrPortFrom(a, 5555))
		require.NoError(t, err)
		_, err = uc.Write([]byte("x"))
		require.NoError(t, err)
		uc.Close()
	}
	waitFor(t, "packets to every tunnel", func() bool { return env.proxy.Stats().ToClient == 1+more })
}

// A spoofed source is dropped, counted and answered with ICMP (RFC 9484
// §4.8); a packet whose TTL would expire at the proxy gets Time Exceeded.
func TestConnectIPSpoofedSourceAndTTL(t *testing.T) {
	env := startIPProxy(t, 0)
	c, str, a4, _ := env.rawIP(t, "/vpn")
	require.True(t, a4.IsValid())
	spoofed := ippkt.BuildICMPEcho(netip.MustParseAddr("10.77.200.200"), env.host4, 1, 1, []byte("x"), 64, true)
	c.send(t, str.StreamID(), spoofed)
	_, reply := c.recvIP(t)
	h, err := ippkt.Parse(reply)
	require.NoError(t, err)
	require.Equal(t, uint8(1), h.Proto, "ICMP")
	require.Equal(t, byte(3), reply[h.HeaderLen], "Destination Unreachable")
	require.Equal(t, byte(13), reply[h.HeaderLen+1], "administratively prohibited")

	expiring := ippkt.BuildICMPEcho(a4, env.host4, 1, 2, []byte("x"), 1, true)
	c.send(t, str.StreamID(), expiring)
	_, reply = c.recvIP(t)
	h, err = ippkt.Parse(reply)
	require.NoError(t, err)
	require.Equal(t, byte(11), reply[h.HeaderLen], "Time Exceeded")

	require.EventuallyWithT(t, func(ct *assert.CollectT) { // ICMPToClient: after SendDatagram returns
		st := env.proxy.Stats()
		assert.Equal(ct, uint64(1), st.DropSource)
		assert.Equal(ct, uint64(1), st.DropHopLimit)
		assert.Equal(ct, uint64(2), st.ICMPToClient)
	}, 5*time.Second, time.Millisecond)
}

// recvIP waits for the next datagram, skipping the MTU probe (context ID 1).
func (c *rawTunnelConn) recvIP(t *testing.T) (quic.StreamID, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		b, err := c.qc.ReceiveDatagram(ctx)
		require.NoError(t, err)
		id, payload, err := wire.ParseDatagram(b)
		require.NoError(t, err)
		ctxID, rest, err := wire.ParseContextID(payload)
		require.NoError(t, err)
		if ctxID == 0 {
			return quic.StreamID(id), rest
		}
	}
}

// Bad scopes are 400; a target name that does not resolve is 502.
func TestConnectIPScopeErrors(t *testing.T) {
	env := startIPProxy(t, 0)
	c := env.rawDial(t)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/.well-known/masque/ip/192.0.2.0%2F33/*/", 400},
		{"/.well-known/masque/ip/*/256/", 400},
		{"/.well-known/masque/ip/bad_name/*/", 400},
		{"/.well-known/masque/ip/nxdomain.invalid/*/", 502},
		{"/.well-known/masque/ip/10.0.0.0%2F8/*/", 403},
		{"/.well-known/masque/ip/192.0.2.0%2F24/17/", 200},
		{"/nothing/here", 404},
	} {
		resp := c.do(t, http.MethodConnect, "connect-ip", tc.path)
		require.Equal(t, tc.status, resp.StatusCode, "%s: Proxy-Status %s", tc.path, resp.Header.Get("Proxy-Status"))
	}
}

// One HTTP/3 connection carries a CONNECT-UDP and a CONNECT-IP tunnel at
// once, each with traffic; the stats (and so /metrics) show both kinds.
func TestUDPAndIPOnOneConnection(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, env.addr, clientTLS(t), &quic.Config{EnableDatagrams: true, InitialPacketSize: 1350})
	require.NoError(t, err)
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)

	// CONNECT-IP through connect-ip-go, on this connection.
	req, err := connectip.NewRequest(ctx, uritemplate.MustNew("https://"+env.addr+"/vpn"))
	require.NoError(t, err)
	ipConn, _, err := connectip.NewClientConn(cc).Dial(req)
	require.NoError(t, err)
	defer ipConn.Close()
	assigned, err := ipConn.ReceiveAddressAssignment(ctx)
	require.NoError(t, err)
	_, err = ipConn.Routes(ctx)
	require.NoError(t, err)
	var a4 netip.Addr
	for _, a := range assigned {
		if a.IPPrefix.Addr().Is4() {
			a4 = a.IPPrefix.Addr()
		}
	}

	// CONNECT-UDP with quic-go's own HTTP/3 client, on the same connection.
	ustr, err := cc.OpenRequestStream(ctx)
	require.NoError(t, err)
	u, _ := url.Parse("https://" + env.addr + udpPath("127.0.0.1", portOf(env.echo.Addr().String())))
	require.NoError(t, ustr.SendRequestHeader(&http.Request{Method: http.MethodConnect, Proto: "connect-udp",
		Host: u.Host, URL: u, Header: http.Header{"Capsule-Protocol": {"?1"}}}))
	resp, err := ustr.ReadResponse()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)

	require.NoError(t, ustr.SendDatagram(append([]byte{0}, "udp beside ip"...)))
	got, err := ustr.ReceiveDatagram(ctx)
	require.NoError(t, err)
	require.Equal(t, "\x00udp beside ip", string(got))
	h := exchange(t, ipConn, ippkt.BuildICMPEcho(a4, env.host4, 9, 9, []byte("ip beside udp"), 64, true))
	require.Equal(t, env.host4, h.Src)

	st := env.proxy.Stats()
	require.Equal(t, int64(1), st.TunnelsByProtocol["connect-udp"])
	require.Equal(t, int64(1), st.TunnelsByProtocol["connect-ip"])
	require.Equal(t, int64(1), st.Conns)
	// And /metrics shows both kinds.
	err = testutil.CollectAndCompare(metrics.NewCollector(env.proxy), strings.NewReader(`
# HELP masqroute_tunnels_open Tunnels open now (answered 2xx and not yet ended), by kind (the request's :protocol).
# TYPE masqroute_tunnels_open gauge
masqroute_tunnels_open{kind="connect-ip"} 1
masqroute_tunnels_open{kind="connect-udp"} 1
`), "masqroute_tunnels_open")
	require.NoError(t, err)
}

// A packet from the network too large for the client's QUIC datagrams is
// answered, toward its sender, with ICMP Packet Too Big carrying the
// tunnel's MTU (RFC 9484 §10.1), and counted.
func TestConnectIPReturnPacketTooBig(t *testing.T) {
	captureClientLog(t)
	env := startIPProxy(t, 0) // the network carries 1500
	_, _, a6 := env.dialIP(t)
	// The host in the userspace network sends 1450 bytes of UDP to the
	// client: more than a QUIC datagram of this connection holds. (IPv6:
	// an IPv4 packet without DF would be dropped without ICMP instead, see
	// docs/connect-ip.md.)
	uc, err := env.ns.Net().DialUDPAddrPort(netip.AddrPortFrom(env.host6, 9999), netip.AddrPortFrom(a6, 5555))
	require.NoError(t, err)
	defer uc.Close()
	_, err = uc.Write(make([]byte, 1450))
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := env.proxy.Stats()
		if st.DropReturnOversize == 1 && st.ICMPToNetwork == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Packet Too Big: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A connection that cannot carry a 1280-byte packet in one datagram gets no
// CONNECT-IP tunnel: the stream is aborted (RFC 9484 §10.1).
func TestConnectIPAbortsWithoutRoomFor1280(t *testing.T) {
	ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
	require.NoError(t, err)
	p, err := proxy.New(proxy.Config{IP: &proxy.IPConfig{Device: ns}, Logger: discardLog()})
	require.NoError(t, err)
	defer p.Close()
	tlsConf := loopbackCert(t).ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	// Not p.QUICConfig: an embedder who forgot it, with 1280-byte packets
	// and no path MTU discovery, leaves no room for 1280-byte IP packets.
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, &quic.Config{EnableDatagrams: true, InitialPacketSize: 1280, DisablePathMTUDiscovery: true})
	require.NoError(t, err)
	defer ln.Close()
	go p.Serve(ln)
	env := &ipEnv{proxyEnv: &proxyEnv{addr: ln.Addr().String(), proxy: p}}
	c := env.rawTunnelDial(t)
	str := c.open(t)
	u, _ := url.Parse("https://" + env.addr + "/.well-known/masque/ip/")
	require.NoError(t, str.SendRequestHeader(&http.Request{Method: http.MethodConnect, Proto: "connect-ip", Host: u.Host, URL: u,
		Header: http.Header{"Capsule-Protocol": {"?1"}}}))
	// The abort may overtake the 200 (a reset discards unread data).
	resp, err := str.ReadResponse()
	if err == nil {
		require.Equal(t, 200, resp.StatusCode)
		str.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = io.ReadAll(str)
	}
	require.ErrorContains(t, err, "H3_GENERAL_PROTOCOL_ERROR", "the stream must be aborted")
	waitFor(t, "abort counted", func() bool { return p.Stats().IPMTUAborts == 1 && p.Stats().Tunnels == 0 })
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
