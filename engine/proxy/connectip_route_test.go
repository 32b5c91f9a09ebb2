package proxy

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/ippkt"
	"github.com/masqroute/masqroute/engine/packetio"
)

// blockingSender stands in for a QUIC connection whose send queue is full:
// SendDatagram blocks until release is closed, then fails as a closed
// connection's does.
type blockingSender struct {
	calls   atomic.Int64
	release chan struct{}
}

var errConnGone = errors.New("test: connection closed")

func (b *blockingSender) SendDatagram([]byte) error {
	b.calls.Add(1)
	<-b.release
	return errConnGone
}

// ipTestTunnel is a CONNECT-IP tunnel of a proxy serving a userspace
// network, outside any client connection: its replies go through snd,
// whose connection is out.
func ipTestTunnel(t *testing.T, out engine.DatagramSender, startSender bool) (*Proxy, *ipTunnel, *sender, *packetio.Netstack) {
	t.Helper()
	ns, err := packetio.NewNetstack(packetio.NetstackConfig{})
	require.NoError(t, err)
	p, err := New(Config{IP: &IPConfig{Device: ns, Reachable: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		Logger: discardLogger(), IdleTimeout: -1})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	tun, snd := ipTestTunnelOn(t, p, "*", out, startSender)
	return p, tun, snd, ns
}

// ipTestTunnelOn is a tunnel of p's CONNECT-IP network, as ipTestTunnel's,
// for the scope target asks (cut down as ipKind.Start does).
func ipTestTunnelOn(t *testing.T, p *Proxy, target string, out engine.DatagramSender, startSender bool) (*ipTunnel, *sender) {
	t.Helper()
	r := engine.NewRouter(engine.Options{Sender: out, Logger: discardLogger()})
	t.Cleanup(func() { r.Close() })
	s, err := r.Register(0, nil) // a session for the replies' stream ID
	require.NoError(t, err)
	var snd *sender
	if startSender {
		snd = newSender(out, &p.counters)
	} else { // a ring nobody drains: a client that takes nothing
		snd = &sender{out: out, ctr: &p.counters}
		snd.ring.Init(senderQueueLen)
	}
	scope, err := p.parseIPScope(context.Background(), target, "*", p.ip.reachable())
	require.NoError(t, err)
	req := &Request{datagrams: true, ended: make(chan struct{})}
	tun, err := p.ip.newTunnel(s, req, snd, scope)
	require.NoError(t, err)
	t.Cleanup(func() { tun.Close(engine.ErrUnregistered) })
	return tun, snd
}

// udpPacketFor is a UDP packet from the network's host to the tunnel's
// IPv4 address, in a pooled buffer.
func udpPacketFor(n *ipNet, tun *ipTunnel) *ipBuf {
	b := n.bufs.get()
	pkt := ippkt.BuildUDP(netip.MustParseAddrPort("192.0.2.1:7"), netip.AddrPortFrom(tun.addr4, 5555), make([]byte, 100), 64)
	b.n = copy(b.data[ipHeadroom:], pkt)
	return b
}

// A packet from the network for a tunnel whose connection's reply ring is
// full is dropped as return_queue_full (on the tunnel, as for CONNECT-UDP);
// one for a tunnel that is closing as IPReturnClosed. The queued replies,
// handed back when the connection ends, count as return_closed, and the
// tunnel's counters fold into the totals after the last of them.
func TestRouteToFullAndClosingTunnel(t *testing.T) {
	p, tun, snd, _ := ipTestTunnel(t, &countingSender{}, false)
	n := p.ip
	for i := 0; ; i++ { // fill the connection's reply ring
		b := udpPacketFor(n, tun)
		if !n.route(b, nil) {
			n.bufs.put(b)
			break
		}
		require.Less(t, i, senderQueueLen, "bad %d", n.c.networkBad.Load())
	}
	require.Equal(t, senderQueueLen, snd.ring.Len())
	require.Equal(t, uint64(1), tun.c.dropReturnQueueFull.Load())
	require.Equal(t, uint64(1), p.counters.senderQueueFull.Load())
	require.Equal(t, int64(senderQueueLen), tun.inflight.Load())

	// The device reader found the tunnel just before it closed.
	tun.closeBook()
	b := udpPacketFor(n, tun)
	require.False(t, n.route(b, nil))
	n.bufs.put(b)
	require.Equal(t, uint64(1), n.c.returnClosed.Load())
	require.Equal(t, uint64(1), tun.c.dropReturnQueueFull.Load())

	st := p.Stats()
	require.Zero(t, st.DropReturnClosed, "nothing handed back yet")
	snd.ring.Close() // the connection ends: what is queued comes back
	snd.ring.Drain(func(r reply) { r.src.replied(&r, errSenderClosed) })
	require.Zero(t, tun.inflight.Load())
	st = p.Stats()
	require.Equal(t, uint64(senderQueueLen), st.DropReturnClosed)
	require.Equal(t, uint64(1), st.DropReturnQueueFull)
	require.Equal(t, uint64(1), st.IPReturnClosed)
	require.Zero(t, st.DropReturnSendError+st.DropTeardown+st.ToClient)
	p.mu.Lock()
	_, live := p.live[&tun.c]
	p.mu.Unlock()
	require.False(t, live, "folded after the last reply")
}

// returnBooks is the return path's identity: every packet read from the
// device is either dropped with one reason or sent to the client.
func returnBooks(st Stats) (in, out uint64) {
	return st.IPFromNetwork, st.IPNoTunnel + st.IPNetworkMalformed + st.IPReturnClosed +
		st.DropScope + st.DropHopLimit +
		st.ToClient + st.DropReturnOversize + st.DropReturnSendError + st.DropReturnQueueFull +
		st.DropReturnClosed + st.DropTeardown
}

// Packets from the network queued behind a client that takes nothing, when
// its connection ends, are counted as teardown (the connection refused them
// after the tunnel closed), not as send errors; the tunnel's counters fold
// once the last is handed back, and the return path's books balance.
func TestIPReturnTeardownAccounting(t *testing.T) {
	out := &blockingSender{release: make(chan struct{})}
	p, tun, snd, ns := ipTestTunnel(t, out, true)
	var closeOnce sync.Once
	closeSender := func() { closeOnce.Do(func() { close(out.release); snd.close() }) }
	t.Cleanup(closeSender)
	host := netip.MustParseAddr("192.0.2.1")
	require.Contains(t, ns.HostAddrs(), host)
	uc, err := ns.Net().DialUDPAddrPort(netip.AddrPortFrom(host, 9999), netip.AddrPortFrom(tun.addr4, 5555))
	require.NoError(t, err)
	defer uc.Close()

	const sent = 20
	write := func() {
		t.Helper()
		_, err := uc.Write(make([]byte, 100))
		require.NoError(t, err)
	}
	// One packet blocks in SendDatagram, then the rest wait in the ring.
	write()
	require.Eventually(t, func() bool { return out.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	for range sent - 1 {
		write()
	}
	require.Eventually(t, func() bool { return snd.ring.Len() == sent-1 }, 5*time.Second, time.Millisecond)
	st := p.Stats()
	require.Equal(t, uint64(sent), st.IPFromNetwork)
	require.Zero(t, st.DropReturnClosed+st.DropTeardown+st.DropReturnSendError)

	// The connection ends as ServeConn ends it: its tunnels close (the
	// router's Close), then its sender; the QUIC connection's close
	// fails the send in progress.
	tun.Close(engine.ErrUnregistered)
	require.Equal(t, 0, p.Stats().IPAddressesInUse)
	closeSender()

	st = p.Stats()
	// The sender tries every queued reply on the dead connection before it
	// stops; each failure after the tunnel closed is a teardown discard.
	// (Replies the sender hands back unsent count as return_closed: see
	// TestRouteToFullAndClosingTunnel.)
	require.Equal(t, uint64(sent), st.DropTeardown+st.DropReturnClosed)
	require.Equal(t, uint64(sent), st.DropTeardown)
	require.Zero(t, st.DropReturnSendError, "teardown discards are not send errors")
	require.Zero(t, st.ToClient)
	in, outs := returnBooks(st)
	require.Equal(t, in, outs, "return path: %+v", st)
	p.mu.Lock()
	require.Empty(t, p.live, "the tunnel's counters folded")
	p.mu.Unlock()

	// After the tunnel: its address belongs to nobody (ICMP, counted).
	_, err = uc.Write(make([]byte, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Stats().IPNoTunnel == 1 }, 5*time.Second, time.Millisecond)
	in, outs = returnBooks(p.Stats())
	require.Equal(t, in, outs)
}

// The return path allocates nothing per packet: the device reader's checks
// and framing, the push onto the connection's ring, the sender's
// SendDatagram and replied (which frees the buffer). The device read
// itself is the Device's (a TUN read does not allocate; gVisor does).
func TestIPReturnDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	out := &countingSender{}
	p, tun, snd, _ := ipTestTunnel(t, out, true)
	t.Cleanup(snd.close)
	n := p.ip
	pkt := ippkt.BuildUDP(netip.MustParseAddrPort("192.0.2.1:7"), netip.AddrPortFrom(tun.addr4, 5555), make([]byte, 1200), 64)
	one := func() {
		before := out.n.Load()
		b := n.bufs.get()
		b.n = copy(b.data[ipHeadroom:], pkt)
		if !n.route(b, nil) {
			t.Fatal("not queued")
		}
		for out.n.Load() == before {
			runtime.Gosched()
		}
	}
	for range 10 {
		one() // warm the pools
	}
	allocs := testing.AllocsPerRun(200, one)
	require.Zero(t, allocs, "allocations per packet, device reader to sender")
	require.Eventually(t, func() bool { return tun.c.toClient.Load() == 10+201 }, 5*time.Second, time.Millisecond)
}

// A return-path buffer is one allocator size class, 2048 bytes, not a few
// bytes over it (which lands in the 2304-byte class).
func TestIPBufSize(t *testing.T) {
	require.Equal(t, uintptr(2048), unsafe.Sizeof(ipBuf{}))
	var p ipBufPool
	b := p.get()
	p.put(b)
	require.Panics(t, func() { p.put(b) }, "double put")
}

// A reply, one slot of a connection's reply ring, is one cache line.
func TestReplySize(t *testing.T) {
	require.Equal(t, uintptr(64), unsafe.Sizeof(reply{}))
}
