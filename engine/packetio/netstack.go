package packetio

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// Netstack pipeline, for one packet in each direction:
//
//	WritePackets ─▶ tun.Write ─▶ gVisor (synchronous: the reply, if any, is
//	    built on the writer's goroutine) ─▶ channel endpoint ─▶ netTun's
//	    unbuffered channel ─▶ routinePump ─▶ packetQueue ─▶ ReadPackets
//
// wireguard-go's netTun hands outbound packets over an unbuffered channel
// from inside gVisor's send path, so a WritePackets whose packet gets an
// immediate answer (an echo request) cannot return until someone takes that
// answer. routinePump is always taking, so writers never wait on the reader:
// answers go into the bounded packetQueue, which drops when full.
// routineUDPEcho runs the echo service, one goroutine per host address.

// DefaultUDPEchoPort is the port of the netstack host's UDP echo service
// unless configured otherwise (RFC 862's port).
const DefaultUDPEchoPort = 7

// defaultNetstackQueueLen matches the outbound queue of wireguard-go's
// netstack channel endpoint.
const defaultNetstackQueueLen = 1024

// DefaultHostAddrs returns the netstack host's addresses unless configured
// otherwise: 192.0.2.1 (TEST-NET-1, RFC 5737) and 2001:db8::1 (RFC 3849).
func DefaultHostAddrs() []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{192, 0, 2, 1}),
		netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}),
	}
}

// NetstackConfig configures NewNetstack. The zero value is usable.
type NetstackConfig struct {
	// HostAddrs are the host's addresses; a family without one is not
	// routed at all. Empty means DefaultHostAddrs.
	HostAddrs []netip.Addr
	// MTU of the link between the proxy and the host; 0 means DefaultMTU.
	MTU int
	// UDPEchoPort is where the host echoes UDP datagrams back to their
	// sender, on every host address; 0 means DefaultUDPEchoPort.
	UDPEchoPort uint16
	// QueueLen bounds the packets waiting for ReadPackets; 0 means 1024.
	// When full, further packets from the host are dropped and counted.
	QueueLen int
}

// NetstackStats are a Netstack's counters since NewNetstack.
type NetstackStats struct {
	Written    uint64 // packets handed to gVisor by WritePackets
	Rejected   uint64 // packets WritePackets refused (ErrInvalidPacket)
	Read       uint64 // packets returned by ReadPackets
	QueueDrops uint64 // packets from the host dropped because the queue was full
}

// Netstack is a Device whose network is a gVisor userspace stack with a
// single host on it (wireguard-go's tun/netstack). The host answers ICMP
// and ICMPv6 echo requests and runs a UDP echo service; packets to any
// other address are dropped silently (gVisor does not forward), and UDP to
// a host port nobody listens on gets an ICMP port unreachable (rate-limited
// by gVisor). Replies have TTL/Hop Limit 64. The host's default routes
// point back out through the device, so its replies, and anything sent
// with Net, reach whatever client addresses the proxy assigns without
// configuring the pools here.
//
// It needs no privileges. It runs one goroutine moving packets to the
// queue and one per host address for the echo service, all stopped by
// Close; gVisor adds its TCP processor goroutines, which Close tells to
// stop and which exit moments later. gVisor allocates on every packet
// (about 9 allocations per ICMP echo round trip, 25 per UDP one, measured
// by TestNetstackAllocs); this package adds none.
type Netstack struct {
	dev   tun.Device
	tnet  *netstack.Net
	q     *packetQueue
	mtu   int
	addrs []netip.Addr

	// mu makes Close wait for WritePackets calls in flight: tearing the
	// stack down under one would let gVisor send a reply into the closed
	// netTun channel, which panics.
	mu     sync.RWMutex
	closed bool // guarded by mu

	echoConns []*gonet.UDPConn
	echoWG    sync.WaitGroup
	pumpDone  chan struct{}
	closeOnce sync.Once

	written    atomic.Uint64
	rejected   atomic.Uint64
	read       atomic.Uint64
	queueDrops atomic.Uint64
}

var _ Device = (*Netstack)(nil)

// NewNetstack builds the userspace network described by cfg and starts its
// goroutines; Close stops them.
func NewNetstack(cfg NetstackConfig) (*Netstack, error) {
	addrs := cfg.HostAddrs
	if len(addrs) == 0 {
		addrs = DefaultHostAddrs()
	}
	for i, a := range addrs {
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			return nil, fmt.Errorf("packetio: netstack host address %v: want a plain IPv4 or IPv6 address", a)
		}
		// Checked here because CreateNetTUN leaks its stack when it fails.
		if slices.Contains(addrs[:i], a) {
			return nil, fmt.Errorf("packetio: netstack host address %v given twice", a)
		}
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < minMTU || mtu > maxPacketSize {
		return nil, fmt.Errorf("packetio: netstack MTU %d outside [%d, %d]", mtu, minMTU, maxPacketSize)
	}
	port := cfg.UDPEchoPort
	if port == 0 {
		port = DefaultUDPEchoPort
	}
	qlen := cfg.QueueLen
	if qlen == 0 {
		qlen = defaultNetstackQueueLen
	}
	if qlen < 0 {
		return nil, fmt.Errorf("packetio: netstack queue length %d", qlen)
	}

	dev, tnet, err := netstack.CreateNetTUN(addrs, nil, mtu)
	if err != nil {
		return nil, fmt.Errorf("packetio: netstack: %w", err)
	}
	n := &Netstack{
		dev:      dev,
		tnet:     tnet,
		q:        newPacketQueue(qlen, mtu),
		mtu:      mtu,
		addrs:    append([]netip.Addr(nil), addrs...),
		pumpDone: make(chan struct{}),
	}
	go n.routinePump()
	for _, a := range addrs {
		c, err := tnet.ListenUDPAddrPort(netip.AddrPortFrom(a, port))
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("packetio: netstack UDP echo on %v: %w", netip.AddrPortFrom(a, port), err)
		}
		n.echoConns = append(n.echoConns, c)
		n.echoWG.Add(1)
		go n.routineUDPEcho(c)
	}
	return n, nil
}

// Net is the userspace network itself, for tests that dial, listen or ping
// from the host's addresses. Close what it returns before closing n: a
// packet sent while n closes can race wireguard-go's netTun.Close onto the
// channel it closes, and panic.
func (n *Netstack) Net() *netstack.Net { return n.tnet }

// HostAddrs returns the host's addresses.
func (n *Netstack) HostAddrs() []netip.Addr { return append([]netip.Addr(nil), n.addrs...) }

// MTU implements Device.
func (n *Netstack) MTU() int { return n.mtu }

// BatchSize implements Device.
func (n *Netstack) BatchSize() int { return idealBatchSize }

// Stats returns n's counters. Drops inside gVisor (a packet for an address
// that is not the host's, a bad checksum) are not visible here.
func (n *Netstack) Stats() NetstackStats {
	return NetstackStats{
		Written:    n.written.Load(),
		Rejected:   n.rejected.Load(),
		Read:       n.read.Load(),
		QueueDrops: n.queueDrops.Load(),
	}
}

// ReadPackets implements Device. Packets come in the order the host sent
// them.
func (n *Netstack) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	k, err := n.q.read(bufs, sizes)
	n.read.Add(uint64(k))
	return k, err
}

// WritePackets implements Device. Each packet is processed by gVisor before
// WritePackets moves to the next, so a reply it provokes may be ready for
// ReadPackets before WritePackets returns.
func (n *Netstack) WritePackets(pkts [][]byte) (int, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return 0, errClosed
	}
	for i := range pkts {
		if err := checkPacket(pkts[i]); err != nil {
			n.rejected.Add(1)
			return i, err
		}
		// One packet per call: netTun.Write gives up on the whole batch at
		// the first packet it refuses. gVisor copies the packet.
		if _, err := n.dev.Write(pkts[i:i+1], 0); err != nil {
			n.rejected.Add(1)
			return i, fmt.Errorf("packetio: netstack write: %w", err)
		}
		n.written.Add(1)
	}
	return len(pkts), nil
}

// Close implements Device.
func (n *Netstack) Close() error {
	n.closeOnce.Do(func() {
		// Teardown order:
		// 1. Fail ReadPackets now, so the reader stops promptly.
		n.q.close()
		// 2. Wait for writes in flight and refuse new ones.
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		// 3. Stop the echo services, the only senders we own.
		for _, c := range n.echoConns {
			c.Close()
		}
		n.echoWG.Wait()
		// 4. Tear down the stack. routinePump keeps draining until netTun
		// closes its channel, so no gVisor sender is left blocked on it.
		// gVisor's TCP processor goroutines are told to stop here and exit
		// on their own shortly after; there is no handle to wait for them.
		n.dev.Close()
		// 5. The pump sees the closed channel and exits.
		<-n.pumpDone
	})
	return nil
}

// routinePump moves packets from netTun to the queue until netTun closes.
func (n *Netstack) routinePump() {
	defer close(n.pumpDone)
	bufs := make([][]byte, 1)
	sizes := make([]int, 1)
	scratch := make([]byte, n.mtu)
	for {
		s := n.q.tryGet()
		if s != nil {
			bufs[0] = s.buf
		} else {
			bufs[0] = scratch
		}
		_, err := n.dev.Read(bufs, sizes, 0)
		if err != nil {
			if s != nil {
				n.q.put(s)
			}
			return // os.ErrClosed: Close is under way
		}
		if s == nil {
			// The queue was full when the read began; decide on arrival.
			if s = n.q.tryGet(); s == nil {
				n.queueDrops.Add(1)
				continue
			}
			copy(s.buf, scratch[:sizes[0]])
		}
		s.n = sizes[0]
		n.q.push(s)
	}
}

// routineUDPEcho answers every datagram c receives with the same bytes.
func (n *Netstack) routineUDPEcho(c *gonet.UDPConn) {
	defer n.echoWG.Done()
	buf := make([]byte, maxPacketSize)
	for {
		k, from, err := c.ReadFrom(buf)
		if errors.Is(err, io.EOF) {
			return // c closed
		}
		if err != nil {
			select {
			case <-n.q.done:
				return // Close is under way; EOF is moments away
			default:
				continue
			}
		}
		// Best effort, like any echo service: a reply gVisor cannot send
		// is lost.
		c.WriteTo(buf[:k], from)
	}
}
