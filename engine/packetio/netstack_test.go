package packetio

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func newNetstack(t testing.TB, cfg NetstackConfig) *Netstack {
	t.Helper()
	n, err := NewNetstack(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })
	return n
}

func TestNetstackDefaults(t *testing.T) {
	n := newNetstack(t, NetstackConfig{})
	require.Equal(t, []netip.Addr{host4, host6}, n.HostAddrs())
	require.Equal(t, DefaultHostAddrs(), n.HostAddrs())
	require.Equal(t, DefaultMTU, n.MTU())
	require.Equal(t, idealBatchSize, n.BatchSize())
	require.NotNil(t, n.Net())
}

func TestNetstackConfigErrors(t *testing.T) {
	for name, cfg := range map[string]NetstackConfig{
		"small MTU":    {MTU: 1000},
		"huge MTU":     {MTU: 70000},
		"invalid addr": {HostAddrs: []netip.Addr{{}}},
		"mapped addr":  {HostAddrs: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.1")}},
		"queue":        {QueueLen: -1},
		"duplicate":    {HostAddrs: []netip.Addr{host4, host6, host4}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewNetstack(cfg)
			require.Error(t, err)
		})
	}
}

// A host configured elsewhere, with another echo port and MTU, and only
// IPv4.
func TestNetstackCustomConfig(t *testing.T) {
	host := netip.MustParseAddr("203.0.113.9")
	n := newNetstack(t, NetstackConfig{HostAddrs: []netip.Addr{host}, MTU: 1280, UDPEchoPort: 5353})
	require.Equal(t, 1280, n.MTU())
	writeAll(t, n,
		udpPacket(netip.AddrPortFrom(client4, 1000), netip.AddrPortFrom(host4, 5353), []byte("old host")),
		udpPacket(netip.AddrPortFrom(client4, 1000), netip.AddrPortFrom(host, 5353), []byte("new host")))
	p := parsePacket(t, readOne(t, n))
	require.Equal(t, host, p.src)
	require.Equal(t, uint16(5353), p.srcPort)
	require.Equal(t, []byte("new host"), p.payload)
}

// UDP to a port nobody listens on gets the ICMP error a host sends, quoting
// the offending datagram.
func TestNetstackClosedPortUnreachable(t *testing.T) {
	n := newNetstack(t, NetstackConfig{})
	for _, tc := range []struct {
		client, host netip.Addr
		typ, code    uint8
	}{
		{client4, host4, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4PortUnreachable)},
		{client6, host6, uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PortUnreachable)},
	} {
		req := udpPacket(netip.AddrPortFrom(tc.client, 1000), netip.AddrPortFrom(tc.host, 9), []byte("discard?"))
		writeAll(t, n, req)
		p := parsePacket(t, readOne(t, n))
		require.Equal(t, tc.host, p.src)
		require.Equal(t, tc.client, p.dst)
		require.Equal(t, tc.typ, p.icmpType)
		require.Equal(t, tc.code, p.icmpCode)
		require.EqualValues(t, 64, p.ttl)
		// Bytes 4-8 of the ICMP header are unused; the quote follows.
		quoted := append([]byte{byte(p.id >> 8), byte(p.id), byte(p.seq >> 8), byte(p.seq)}, p.payload...)
		require.Equal(t, []byte{0, 0, 0, 0}, quoted[:4])
		require.Equal(t, req, quoted[4:])
	}
}

// The host reaches any client address through the device without per-pool
// configuration, for traffic it starts as well as for replies.
func TestNetstackHostDialsClient(t *testing.T) {
	n := newNetstack(t, NetstackConfig{})
	for _, tc := range []struct{ client, host netip.Addr }{
		{netip.MustParseAddr("198.19.255.254"), host4},
		{netip.MustParseAddr("fd00::1:2"), host6},
	} {
		c, err := n.Net().DialUDPAddrPort(netip.AddrPortFrom(tc.host, 0), netip.AddrPortFrom(tc.client, 5000))
		require.NoError(t, err)
		_, err = c.Write([]byte("hello client"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		p := parsePacket(t, readOne(t, n))
		require.Equal(t, tc.host, p.src)
		require.Equal(t, tc.client, p.dst)
		require.Equal(t, uint16(5000), p.dstPort)
		require.Equal(t, []byte("hello client"), p.payload)
	}
}

// The client side of a UDP exchange with a socket inside the netstack: what
// the proxy does for a client talking to a server behind it.
func TestNetstackClientReachesListener(t *testing.T) {
	n := newNetstack(t, NetstackConfig{})
	l, err := n.Net().ListenUDPAddrPort(netip.AddrPortFrom(host6, 9999))
	require.NoError(t, err)
	defer l.Close()
	writeAll(t, n, udpPacket(netip.AddrPortFrom(client6, 1234), netip.AddrPortFrom(host6, 9999), []byte("to server")))
	require.NoError(t, l.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 100)
	k, from, err := l.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "to server", string(buf[:k]))
	require.Equal(t, "[fd00::7]:1234", from.String())
}

// With the reader stalled, the queue fills and later packets from the host
// are dropped and counted; writers never block.
func TestNetstackQueueOverflowDrops(t *testing.T) {
	const qlen, sent = 4, 10
	n := newNetstack(t, NetstackConfig{QueueLen: qlen})
	for i := range sent {
		writeAll(t, n, echoRequest(client4, host4, 1, uint16(i), nil))
	}
	// The pump takes each reply before WritePackets returns but may still be
	// deciding about the last one.
	require.Eventually(t, func() bool { return n.Stats().QueueDrops == sent-qlen }, 5*time.Second, time.Millisecond)
	bufs, sizes := newBufs(n)
	k, err := n.ReadPackets(bufs, sizes)
	require.NoError(t, err)
	require.Equal(t, qlen, k)
	for i := range k {
		require.Equal(t, uint16(i), parsePacket(t, bufs[i][:sizes[i]]).seq)
	}
	require.Equal(t, NetstackStats{Written: sent, Read: qlen, QueueDrops: sent - qlen}, n.Stats())
}

// gVisor allocates per packet (packet buffers, views, the echo reply); this
// test pins the number so a change shows up, rather than asserting zero.
func TestNetstackAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	n := newNetstack(t, NetstackConfig{})
	bufs, sizes := newBufs(n)
	for _, tc := range []struct {
		name string
		req  []byte
		max  float64
	}{
		{"icmp4", echoRequest(client4, host4, 1, 1, make([]byte, 56)), 12},
		{"icmp6", echoRequest(client6, host6, 1, 1, make([]byte, 56)), 16},
		{"udp4", udpPacket(netip.AddrPortFrom(client4, 1), netip.AddrPortFrom(host4, echoPort), make([]byte, 56)), 28},
	} {
		pkts := [][]byte{tc.req}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := n.WritePackets(pkts); err != nil {
				t.Fatal(err)
			}
			if _, err := n.ReadPackets(bufs, sizes); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %.1f allocs per echo round trip", tc.name, allocs)
		require.LessOrEqual(t, allocs, tc.max, tc.name)
	}
}
