package packetio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// skipWithoutTUN skips t unless this process can create a TUN interface:
// open /dev/net/tun and TUNSETIFF, which needs CAP_NET_ADMIN.
func skipWithoutTUN(t *testing.T) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("TUN unavailable: open /dev/net/tun: %v", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("mqprobe%d")
	require.NoError(t, err)
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Skipf("TUN unavailable: TUNSETIFF: %v", err)
	}
}

// tunTestAddrs picks a /30 in TEST-NET-2 (198.51.100.0/24) for this process,
// so that concurrent test binaries are unlikely to route to each other's
// interface: the interface gets .1, the simulated peer .2.
func tunTestAddrs() (local, peer netip.Addr) {
	base := byte(os.Getpid()%63) * 4
	return netip.AddrFrom4([4]byte{198, 51, 100, base + 1}), netip.AddrFrom4([4]byte{198, 51, 100, base + 2})
}

// configureTUN gives the interface an IPv4 address with a /30 and brings
// it up, with the ioctls ifconfig uses.
func configureTUN(t *testing.T, name string, addr netip.Addr) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	require.NoError(t, err)
	require.NoError(t, ifr.SetInet4Addr(addr.AsSlice()))
	require.NoError(t, unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr), "SIOCSIFADDR")
	require.NoError(t, ifr.SetInet4Addr([]byte{255, 255, 255, 252}))
	require.NoError(t, unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr), "SIOCSIFNETMASK")
	ifr, err = unix.NewIfreq(name)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr), "SIOCGIFFLAGS")
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	require.NoError(t, unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr), "SIOCSIFFLAGS")
}

func openTestTUN(t *testing.T, mtu int) *TUN {
	t.Helper()
	skipWithoutTUN(t)
	d, err := OpenTUN("mqpio%d", mtu)
	require.NoError(t, err)
	return d
}

func TestTUNOpenClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	d := openTestTUN(t, 1400)
	require.Equal(t, 1400, d.MTU())
	require.Positive(t, d.BatchSize())
	require.Contains(t, d.Name(), "mqpio")
	iface, err := net.InterfaceByName(d.Name())
	require.NoError(t, err)
	require.Equal(t, 1400, iface.MTU)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "second Close")
	// By index: the kernel reuses the name at once for the next TUN opened
	// (another test process may open one), but not the index.
	_, err = net.InterfaceByIndex(iface.Index)
	require.Error(t, err, "interface still there after Close")
}

// The kernel answers a ping to the interface's own address: the request
// goes in through WritePackets (virtio header, headroom and all) and the
// reply comes out of ReadPackets.
func TestTUNKernelEcho(t *testing.T) {
	defer goleak.VerifyNone(t)
	d := openTestTUN(t, 1400)
	defer d.Close()
	t.Logf("interface %s, batch size %d", d.Name(), d.BatchSize())
	local, peer := tunTestAddrs()
	configureTUN(t, d.Name(), local)

	payload := []byte("masqroute tun echo")
	req := echoRequest(peer, local, 0x7475, 1, payload)
	sent := append([]byte(nil), req...)
	writeAll(t, d, req)
	require.Equal(t, sent, req, "WritePackets modified its input")

	// The kernel may also send IPv6 router solicitations and the like.
	bufs, sizes := newBufs(d)
	timer := time.AfterFunc(5*time.Second, func() { d.Close() })
	defer timer.Stop()
	for {
		n, err := d.ReadPackets(bufs, sizes)
		require.NoError(t, err, "no echo reply within 5s")
		for i := range n {
			b := bufs[i][:sizes[i]]
			if b[0]>>4 != 4 {
				continue
			}
			p := parsePacket(t, b)
			if !p.isEchoReply() {
				continue
			}
			require.Equal(t, local, p.src)
			require.Equal(t, peer, p.dst)
			require.Equal(t, uint16(0x7475), p.id)
			require.Equal(t, payload, p.payload)
			require.Positive(t, p.ttl)
			require.EqualValues(t, 1, d.Stats().Written)
			checkTUNAllocs(t, d, req, bufs, sizes)
			return
		}
	}
}

// checkTUNAllocs measures a kernel echo round trip through d, whose reply
// to req is known to come back.
func checkTUNAllocs(t *testing.T, d *TUN, req []byte, bufs [][]byte, sizes []int) {
	if raceEnabled {
		return
	}
	pkts := [][]byte{req}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.WritePackets(pkts); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := d.ReadPackets(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if b := bufs[i][:sizes[i]]; b[0]>>4 == 4 && b[20] == 0 { // echo reply
					return
				}
			}
		}
	})
	t.Logf("%.1f allocs per kernel echo round trip", allocs)
	require.Zero(t, allocs)
}

func TestTUNInvalidAndClosed(t *testing.T) {
	defer goleak.VerifyNone(t)
	d := openTestTUN(t, 1280)
	n, err := d.WritePackets([][]byte{{0x10}})
	require.ErrorIs(t, err, ErrInvalidPacket)
	require.Zero(t, n)
	// The link is down: the kernel refuses the write, and says why.
	_, err = d.WritePackets([][]byte{echoRequest(client4, host4, 1, 1, nil)})
	require.Error(t, err)
	require.False(t, errors.Is(err, net.ErrClosed), "%v", err)

	_, err = d.ReadPackets([][]byte{make([]byte, 100)}, []int{0})
	require.Error(t, err, "short buffer")

	errc := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(d)
		_, err := d.ReadPackets(bufs, sizes)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, d.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPackets still blocked 5s after Close")
	}
	_, err = d.WritePackets([][]byte{echoRequest(client4, host4, 1, 1, nil)})
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestOpenTUNBadMTU(t *testing.T) {
	_, err := OpenTUN("mqpio%d", 100)
	require.Error(t, err)
	_, err = OpenTUN(fmt.Sprintf("%020d", 0), 1500) // name longer than IFNAMSIZ
	require.Error(t, err)
}

// bridge copies packets from src to dst until src is closed, recording the
// largest packet and the largest batch seen.
func bridge(src, dst Device, maxLen, maxBatch *int, done chan<- struct{}) {
	defer close(done)
	bufs, sizes := newBufs(src)
	pkts := make([][]byte, 0, len(bufs))
	for {
		n, err := src.ReadPackets(bufs, sizes)
		if err != nil {
			return
		}
		*maxBatch = max(*maxBatch, n)
		pkts = pkts[:0]
		for i := range n {
			*maxLen = max(*maxLen, sizes[i])
			pkts = append(pkts, bufs[i][:sizes[i]])
		}
		for len(pkts) > 0 {
			k, err := dst.WritePackets(pkts)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				k++ // drop the refused packet, as a router would
			}
			pkts = pkts[k:]
		}
	}
}

// A kernel TCP connection to the netstack host, bridged through the TUN:
// with offloads on, the kernel hands the TUN TSO super-packets that
// ReadPackets must split into ordinary packets no larger than the MTU, and
// the written packets must reach the kernel intact.
func TestTUNBridgeKernelTCPToNetstack(t *testing.T) {
	defer goleak.VerifyNone(t)
	const mtu = 1400
	d := openTestTUN(t, mtu)
	local, peer := tunTestAddrs()
	configureTUN(t, d.Name(), local)
	ns, err := NewNetstack(NetstackConfig{HostAddrs: []netip.Addr{peer}, MTU: mtu})
	require.NoError(t, err)

	var tunMaxLen, tunMaxBatch, nsMaxLen, nsMaxBatch int
	tunDone, nsDone := make(chan struct{}), make(chan struct{})
	go bridge(d, ns, &tunMaxLen, &tunMaxBatch, tunDone)
	go bridge(ns, d, &nsMaxLen, &nsMaxBatch, nsDone)

	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.SetDeadline(time.Now().Add(10*time.Second)))

	const size = 1 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	c, err := ns.Net().DialTCPAddrPort(l.Addr().(*net.TCPAddr).AddrPort())
	require.NoError(t, err)
	k, err := l.AcceptTCP()
	require.NoError(t, err)
	require.NoError(t, k.SetDeadline(time.Now().Add(20*time.Second)))
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))

	// Kernel to netstack (split on read), then netstack to kernel (written
	// one by one).
	werr := make(chan error, 1)
	go func() {
		_, err := k.Write(data)
		werr <- err
	}()
	got := make([]byte, size)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.NoError(t, <-werr)
	require.Equal(t, data, got, "kernel to netstack")
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	_, err = io.ReadFull(k, got)
	require.NoError(t, err)
	require.NoError(t, <-werr)
	require.Equal(t, data, got, "netstack to kernel")

	require.NoError(t, c.Close())
	require.NoError(t, k.Close())
	require.NoError(t, d.Close())
	require.NoError(t, ns.Close())
	<-tunDone
	<-nsDone
	t.Logf("from TUN: largest packet %d, largest batch %d (%d split reads lost segments); from netstack: largest packet %d",
		tunMaxLen, tunMaxBatch, d.Stats().SegmentDrops, nsMaxLen)
	require.LessOrEqual(t, tunMaxLen, mtu, "TUN returned a packet larger than the MTU")
	require.LessOrEqual(t, nsMaxLen, mtu)
}
