package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// Connect-UDP-Bind capsule types (draft-ietf-masque-connect-udp-listen -10+).
const (
	capAssign = 0x11
	capAck    = 0x12
	capClose  = 0x13
)

// bindTunnel is a test client's bound tunnel over a rawTunnelConn.
type bindTunnel struct {
	c      *rawTunnelConn
	str    *http3.RequestStream
	caps   quicvarint.Reader
	public netip.AddrPort
}

// bindRequest sends a Connect-UDP-Bind request for host/port (raw, as they
// go in the path) and returns the stream and the response.
func bindRequest(t *testing.T, c *rawTunnelConn, host, port string) (*http3.RequestStream, *http.Response) {
	t.Helper()
	str := c.open(t)
	u, err := url.Parse("https://" + c.qc.RemoteAddr().String() + "/.well-known/masque/udp/" + host + "/" + port + "/")
	require.NoError(t, err)
	req := &http.Request{Method: http.MethodConnect, Proto: "connect-udp", Host: u.Host, URL: u,
		Header: http.Header{"Capsule-Protocol": {"?1"}, "Connect-Udp-Bind": {"?1"}}}
	require.NoError(t, str.SendRequestHeader(req))
	resp, err := str.ReadResponse()
	require.NoError(t, err)
	return str, resp
}

func openBind(t *testing.T, env *proxyEnv) *bindTunnel {
	t.Helper()
	c := env.rawTunnelDial(t)
	str, resp := bindRequest(t, c, "%2A", "%2A")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "?1", resp.Header.Get("Connect-Udp-Bind"))
	pa := resp.Header.Get("Proxy-Public-Address")
	require.Regexp(t, `^"127\.0\.0\.1:\d+"$`, pa)
	public := netip.MustParseAddrPort(pa[1 : len(pa)-1])
	require.NotZero(t, public.Port())
	return &bindTunnel{c: c, str: str, caps: quicvarint.NewReader(str), public: public}
}

func (b *bindTunnel) writeCapsule(t *testing.T, typ uint64, value []byte) {
	t.Helper()
	_, err := b.str.Write(appendCapsule(nil, typ, value))
	require.NoError(t, err)
}

func (b *bindTunnel) readCapsule(t *testing.T) (uint64, []byte) {
	t.Helper()
	b.str.SetReadDeadline(time.Now().Add(3 * time.Second))
	typ, err := quicvarint.Read(b.caps)
	require.NoError(t, err)
	n, err := quicvarint.Read(b.caps)
	require.NoError(t, err)
	v := make([]byte, n)
	_, err = io.ReadFull(b.caps, v)
	require.NoError(t, err)
	return typ, v
}

// assign sends COMPRESSION_ASSIGN for id (peer invalid: uncompressed) and
// returns the answer's type.
func (b *bindTunnel) assign(t *testing.T, id uint64, peer netip.AddrPort) uint64 {
	t.Helper()
	v := quicvarint.Append(nil, id)
	if peer.IsValid() {
		v = appendAddrPort(v, peer)
	} else {
		v = append(v, 0)
	}
	b.writeCapsule(t, capAssign, v)
	typ, got := b.readCapsule(t)
	require.Equal(t, quicvarint.Append(nil, id), got)
	return typ
}

func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if a.Addr().Is4() {
		ip := a.Addr().As4()
		b = append(append(b, 4), ip[:]...)
	} else {
		ip := a.Addr().As16()
		b = append(append(b, 6), ip[:]...)
	}
	return append(b, byte(a.Port()>>8), byte(a.Port()))
}

// send sends payload on context id; peer valid: uncompressed, with its address.
func (b *bindTunnel) send(t *testing.T, id uint64, peer netip.AddrPort, payload string) {
	t.Helper()
	d := quicvarint.Append(nil, uint64(b.str.StreamID())/4)
	d = quicvarint.Append(d, id)
	if peer.IsValid() {
		d = appendAddrPort(d, peer)
	}
	require.NoError(t, b.c.qc.SendDatagram(append(d, payload...)))
}

// recv returns the next datagram's context ID and the rest.
func (b *bindTunnel) recv(t *testing.T) (uint64, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := b.c.qc.ReceiveDatagram(ctx)
	require.NoError(t, err)
	qsid, n, err := quicvarint.Parse(d)
	require.NoError(t, err)
	require.Equal(t, uint64(b.str.StreamID())/4, qsid)
	id, m, err := quicvarint.Parse(d[n:])
	require.NoError(t, err)
	return id, d[n+m:]
}

// udpPeer is a loopback UDP peer.
func udpPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// peerRecv reads one datagram at a peer.
func peerRecv(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	return string(buf[:n]), from
}

// TestBindUncompressed: one bound socket reaches two peers on the
// uncompressed context, and both reach the client, with their addresses.
func TestBindUncompressed(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	b := openBind(t, env)
	require.Equal(t, uint64(capAck), b.assign(t, 2, netip.AddrPort{}))
	a, c := udpPeer(t), udpPeer(t)
	for _, p := range []*net.UDPConn{a, c} {
		b.send(t, 2, addrOf(p), "to "+addrOf(p).String())
		msg, from := peerRecv(t, p)
		require.Equal(t, "to "+addrOf(p).String(), msg)
		require.Equal(t, b.public, from, "sent from the public address")
		_, err := p.WriteToUDPAddrPort([]byte("from peer"), b.public)
		require.NoError(t, err)
		id, rest := b.recv(t)
		require.Equal(t, uint64(2), id)
		require.Equal(t, appendAddrPort(nil, addrOf(p)), rest[:7])
		require.Equal(t, "from peer", string(rest[7:]))
	}
	// The worker counts a datagram after its write returns, which can be
	// after the peer's answer has come all the way back.
	require.Eventually(t, func() bool { return env.proxy.Stats().ToTarget == 2 }, 3*time.Second, 5*time.Millisecond)
	st := env.proxy.Stats()
	require.Equal(t, uint64(1), st.Bind.Opened)
	require.Equal(t, uint64(1), st.Bind.AssignAccepted)
}

// TestBindCompressedAndFirewall: a compressed context carries bare
// payloads; once the uncompressed context is closed, peers without a
// compressed context no longer reach the client, and the closed ID is dead.
func TestBindCompressedAndFirewall(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	b := openBind(t, env)
	a, other := udpPeer(t), udpPeer(t)
	require.Equal(t, uint64(capAck), b.assign(t, 2, netip.AddrPort{}))
	require.Equal(t, uint64(capAck), b.assign(t, 4, addrOf(a)))
	// A second context for the same peer, or a second uncompressed one: refused.
	require.Equal(t, uint64(capClose), b.assign(t, 6, addrOf(a)))
	require.Equal(t, uint64(capClose), b.assign(t, 8, netip.AddrPort{}))

	b.send(t, 4, netip.AddrPort{}, "compressed")
	msg, _ := peerRecv(t, a)
	require.Equal(t, "compressed", msg)
	a.WriteToUDPAddrPort([]byte("back"), b.public)
	id, rest := b.recv(t)
	require.Equal(t, uint64(4), id)
	require.Equal(t, "back", string(rest))

	// The other peer arrives on the uncompressed context while it is open.
	other.WriteToUDPAddrPort([]byte("open"), b.public)
	id, rest = b.recv(t)
	require.Equal(t, uint64(2), id)
	require.Equal(t, "open", string(rest[7:]))

	// Close it: the firewall is up.
	b.writeCapsule(t, capClose, quicvarint.Append(nil, 2))
	require.Eventually(t, func() bool { return env.proxy.Stats().Bind.Closes == 1 }, 3*time.Second, 5*time.Millisecond)
	other.WriteToUDPAddrPort([]byte("blocked"), b.public)
	require.Eventually(t, func() bool { return env.proxy.Stats().Bind.DropFirewall == 1 }, 3*time.Second, 5*time.Millisecond)
	a.WriteToUDPAddrPort([]byte("still compressed"), b.public)
	id, rest = b.recv(t)
	require.Equal(t, uint64(4), id)
	require.Equal(t, "still compressed", string(rest))
	// The closed uncompressed context carries nothing any more.
	b.send(t, 2, addrOf(other), "late")
	require.Eventually(t, func() bool { return env.proxy.Stats().Bind.DropNoContext == 1 }, 3*time.Second, 5*time.Millisecond)
	st := env.proxy.Stats().Bind
	require.Equal(t, uint64(2), st.AssignAccepted)
	require.Equal(t, uint64(2), st.AssignRejected)
}

// TestBindPolicyPerDatagram: the target policy applies to every peer the
// client sends to, per datagram, and to compressed contexts when assigned.
func TestBindPolicyPerDatagram(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	b := openBind(t, env)
	require.Equal(t, uint64(capAck), b.assign(t, 2, netip.AddrPort{}))
	private := netip.MustParseAddrPort("10.1.2.3:9")
	b.send(t, 2, private, "refused")
	a := udpPeer(t)
	b.send(t, 2, addrOf(a), "allowed")
	msg, _ := peerRecv(t, a)
	require.Equal(t, "allowed", msg)
	require.Equal(t, uint64(1), env.proxy.Stats().Bind.DropPolicy)
	require.Equal(t, uint64(capClose), b.assign(t, 4, private))
	// The proxy's own listener is refused too.
	b.send(t, 2, netip.MustParseAddrPort(env.addr), "self")
	require.Eventually(t, func() bool { return env.proxy.Stats().Bind.DropPolicy == 2 }, 3*time.Second, 5*time.Millisecond)
}

// TestBindRateLimitPerDatagram: the tunnel's rate limit counts bound
// datagrams like CONNECT-UDP's.
func TestBindRateLimitPerDatagram(t *testing.T) {
	env := startProxy(t, proxy.Config{RateTunnelDatagrams: 10, RateBurst: 100 * time.Millisecond})
	b := openBind(t, env)
	require.Equal(t, uint64(capAck), b.assign(t, 2, netip.AddrPort{}))
	a := udpPeer(t)
	const sent = 50
	for range sent {
		b.send(t, 2, addrOf(a), "x")
	}
	require.Eventually(t, func() bool {
		st := env.proxy.Stats()
		return st.ToTarget+st.DropRateLimited == sent
	}, 3*time.Second, 5*time.Millisecond)
	st := env.proxy.Stats()
	require.Positive(t, st.DropRateLimited)
	require.Less(t, st.ToTarget, uint64(sent))
}

// TestBindBadRequests: one "*" is 400; real targets with the header fall
// back to CONNECT-UDP (no Connect-UDP-Bind in the answer); context ID 0,
// an odd (proxy) ID and a reused ID abort the stream.
func TestBindBadRequests(t *testing.T) {
	env := startProxy(t, proxy.Config{})
	c := env.rawTunnelDial(t)
	_, resp := bindRequest(t, c, "%2A", "443")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	echo := env.echo.Addr()
	_, resp = bindRequest(t, c, echo.Addr().String(), itoa(echo.Port()))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Connect-Udp-Bind"))
	require.Empty(t, resp.Header.Get("Proxy-Public-Address"))

	aborted := func(t *testing.T, b *bindTunnel) {
		t.Helper()
		b.str.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := io.ReadAll(b.str)
		var se *quic.StreamError
		require.True(t, errors.As(err, &se), "stream reset, got %v", err)
		require.Equal(t, quic.StreamErrorCode(0x10e), se.ErrorCode) // H3_MESSAGE_ERROR
	}
	t.Run("context 0", func(t *testing.T) {
		b := openBind(t, env)
		b.send(t, 0, netip.AddrPort{}, "zero")
		aborted(t, b)
	})
	t.Run("odd ID", func(t *testing.T) {
		b := openBind(t, env)
		b.writeCapsule(t, capAssign, []byte{0x03, 0x00})
		aborted(t, b)
	})
	t.Run("reused ID", func(t *testing.T) {
		b := openBind(t, env)
		require.Equal(t, uint64(capAck), b.assign(t, 2, netip.AddrPort{}))
		b.writeCapsule(t, capClose, []byte{0x02})
		b.writeCapsule(t, capAssign, []byte{0x02, 0x00})
		aborted(t, b)
	})
}

// TestNoAmplificationBind: empty datagrams on a compressed context (3-byte
// QUIC DATAGRAM frames) do not become a flood of 28-byte packets at the
// peer: the connection's amplification budget applies per datagram.
func TestNoAmplificationBind(t *testing.T) {
	sink := newUDPSink(t)
	env := startProxy(t, proxy.Config{RingSize: 1024})
	b := openBind(t, env)
	require.Equal(t, uint64(capAck), b.assign(t, 2, netip.MustParseAddrPort(sink.addr())))
	d := quicvarint.Append(nil, uint64(b.str.StreamID())/4)
	d = quicvarint.Append(d, 2) // compressed context, empty payload
	start := time.Now()
	const bursts, burst = 300, 100
	for i := range bursts {
		for range burst {
			require.NoError(t, b.c.qc.SendDatagram(d))
		}
		keepUp(t, env, func(st proxy.Stats) uint64 { return st.Router.Dispatched }, uint64((i+1)*burst))
	}
	checkAmplification(t, env, sink, b.c.qc.ConnectionStats().BytesSent, time.Since(start))
}
