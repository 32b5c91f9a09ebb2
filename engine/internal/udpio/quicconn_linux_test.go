package udpio

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// quicPair is a QUICConn on loopback and a plain socket it sends to.
func quicPair(t *testing.T, network string, ip net.IP) (*QUICConn, *net.UDPConn) {
	t.Helper()
	uc, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	require.NoError(t, err)
	c, err := NewQUICConn(uc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	rx, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	require.NoError(t, err)
	t.Cleanup(func() { rx.Close() })
	_ = rx.SetReadBuffer(4 << 20)
	return c, rx
}

// packet is a test packet of size bytes numbered seq.
func packet(seq, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(seq))
	for i := 4; i < size; i++ {
		b[i] = byte(seq + i)
	}
	return b
}

// receive reads n packets from rx and checks that they are want, in order.
func receive(t *testing.T, rx *net.UDPConn, want [][]byte) {
	t.Helper()
	buf := make([]byte, 70000)
	require.NoError(t, rx.SetReadDeadline(time.Now().Add(5*time.Second)))
	for i, w := range want {
		n, _, err := rx.ReadFromUDPAddrPort(buf)
		require.NoError(t, err, "packet %d of %d", i, len(want))
		require.Equal(t, w, buf[:n], "packet %d", i)
	}
}

// TestQUICConnDelivers writes runs of same-size packets, sizes that break
// runs and two destinations interleaved: every packet arrives intact, in
// order per destination, and the same-size runs went out as GSO messages.
func TestQUICConnDelivers(t *testing.T) {
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	rx2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rx2.Close()
	before := Stats()
	sizes := []int{1200, 1200, 1200, 1100, 1200, 1300, 1300, 1300, 1300, 40, 1200}
	var want1, want2 [][]byte
	const rounds = 20
	for r := range rounds {
		for i, size := range sizes {
			p := packet(r*100+i, size)
			to, want := rx.LocalAddr().(*net.UDPAddr), &want1
			if i == 4 { // one packet in each round to the other socket, mid-run
				to, want = rx2.LocalAddr().(*net.UDPAddr), &want2
			}
			n, oobn, err := c.WriteMsgUDP(p, nil, to)
			require.NoError(t, err)
			require.Equal(t, size, n)
			require.Zero(t, oobn)
			*want = append(*want, p)
		}
		receive(t, rx, want1[len(want1)-len(sizes)+1:])
		receive(t, rx2, want2[len(want2)-1:])
	}
	after := Stats()
	require.Equal(t, uint64(rounds*len(sizes)), after.ClientPackets-before.ClientPackets)
	require.Zero(t, after.ClientDropped-before.ClientDropped)
	require.LessOrEqual(t, after.ClientSyscalls-before.ClientSyscalls, after.ClientFlushes-before.ClientFlushes+1)
	if !gsoDisabled.Load() {
		require.Positive(t, after.ClientGSOSends-before.ClientGSOSends, "same-size runs went out as GSO")
	}
}

// TestQUICConnIPv6 sends over an IPv6 socket (sockaddr_in6).
func TestQUICConnIPv6(t *testing.T) {
	if !supportsIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	c, rx := quicPair(t, "udp6", net.IPv6loopback)
	var want [][]byte
	for i := range 10 {
		p := packet(i, 1000)
		_, _, err := c.WriteMsgUDP(p, nil, rx.LocalAddr().(*net.UDPAddr))
		require.NoError(t, err)
		want = append(want, p)
	}
	receive(t, rx, want)
}

func supportsIPv6Loopback() bool {
	uc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	uc.Close()
	return true
}

// TestQUICConnDropsRefused: a packet the kernel refuses (too large for
// UDP) is dropped and counted, and the packets around it still go out.
func TestQUICConnDropsRefused(t *testing.T) {
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	to := rx.LocalAddr().(*net.UDPAddr)
	before := Stats()
	first, last := packet(1, 500), packet(3, 500)
	for _, p := range [][]byte{first, packet(2, 65530), last} {
		_, _, err := c.WriteMsgUDP(p, nil, to)
		require.NoError(t, err) // queued: the refusal comes later
	}
	receive(t, rx, [][]byte{first, last})
	require.Eventually(t, func() bool { return Stats().ClientDropped-before.ClientDropped == 1 }, 5*time.Second, time.Millisecond)
}

// TestQUICConnBackpressure: writers that outrun the flusher wait for room
// instead of losing packets or growing the queue; every write returns.
func TestQUICConnBackpressure(t *testing.T) {
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	to := rx.LocalAddr().(*net.UDPAddr)
	before := Stats()
	const writers, each = 4, 2 * quicQueueMsgs
	var received sync.WaitGroup
	received.Go(func() { // drain so that the receiver's buffer is not the limit
		buf := make([]byte, 2000)
		_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second))
		for range writers * each {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, _, err := c.WriteMsgUDP(packet(w*each+i, 1200), nil, to)
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		s := Stats()
		return s.ClientPackets-before.ClientPackets == writers*each
	}, 5*time.Second, time.Millisecond)
	rx.SetReadDeadline(time.Now().Add(time.Second))
	received.Wait()
}

// TestQUICConnClose: Close sends what was queued, then writes fail.
func TestQUICConnClose(t *testing.T) {
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	to := rx.LocalAddr().(*net.UDPAddr)
	var want [][]byte
	for i := range 50 {
		p := packet(i, 900)
		_, _, err := c.WriteMsgUDP(p, nil, to)
		require.NoError(t, err)
		want = append(want, p)
	}
	require.NoError(t, c.Close())
	receive(t, rx, want)
	_, _, err := c.WriteMsgUDP(packet(99, 100), nil, to)
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, c.Close(), net.ErrClosed, "a second Close")
}

// TestQUICConnWriteDoesNotAllocate: queueing and flushing allocate nothing.
func TestQUICConnWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	to := rx.LocalAddr().(*net.UDPAddr)
	p := packet(1, 1200)
	buf := make([]byte, 2000)
	allocs := testing.AllocsPerRun(200, func() {
		for range 8 {
			if _, _, err := c.WriteMsgUDP(p, nil, to); err != nil {
				panic(err)
			}
		}
		for range 8 {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				panic(err)
			}
		}
	})
	require.Zero(t, allocs)
}

func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func segment(size uint16) []byte {
	var d [2]byte
	*(*uint16)(unsafe.Pointer(&d[0])) = size
	return cmsg(unix.SOL_UDP, unix.UDP_SEGMENT, d[:])
}

// TestAppendOOB: quic-go's single-segment UDP_SEGMENT mark is dropped, a
// real GSO message's is kept, every other control message passes.
func TestAppendOOB(t *testing.T) {
	ecn := cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{2, 0, 0, 0})
	join := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		oob     []byte
		n       int
		want    []byte
		segment bool
	}{
		{"none", nil, 1200, nil, false},
		{"ecn", ecn, 1200, ecn, false},
		{"one segment", join(ecn, segment(1452)), 1222, ecn, false},
		{"exactly one segment", join(segment(1222), ecn), 1222, ecn, false},
		{"quic-go GSO", join(ecn, segment(1452)), 2904, join(ecn, segment(1452)), true},
		{"truncated header", []byte{1, 2, 3}, 10, []byte{1, 2, 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendOOB(nil, tc.oob, tc.n)
			require.Equal(t, len(tc.want), len(got))
			if len(tc.want) > 0 {
				require.Equal(t, tc.want, got)
			}
			require.Equal(t, tc.segment, hasUDPSegment(got))
		})
	}
}

// FuzzAppendOOB: any control data is copied, or shortened by UDP_SEGMENT
// messages, never read past its end; without one it passes unchanged.
func FuzzAppendOOB(f *testing.F) {
	f.Add(append(cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{2, 0, 0, 0}), segment(1452)...), 1200)
	f.Add(segment(100), 1200)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0x67, 0, 0, 0}, 1)
	f.Fuzz(func(t *testing.T, oob []byte, n int) {
		got := appendOOB([]byte{7}, oob, n)
		if got[0] != 7 || len(got)-1 > len(oob) {
			t.Fatalf("appendOOB(%x, %d) = %x", oob, n, got[1:])
		}
		if !hasUDPSegment(oob) && string(got[1:]) != string(oob) {
			t.Fatalf("appendOOB(%x, %d) = %x: changed control data without UDP_SEGMENT", oob, n, got[1:])
		}
	})
}

// TestQUICConnGSORefused: when the kernel refuses a GSO message, the socket
// stops using GSO and sends that run again packet by packet: nothing lost.
func TestQUICConnGSORefused(t *testing.T) {
	if gsoDisabled.Load() {
		t.Skip("no UDP GSO here")
	}
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	c.flush.gsoFault = unix.EIO // before the first write: the flusher reads it after
	to := rx.LocalAddr().(*net.UDPAddr)
	before := Stats()
	// The flusher may take a queue before a run has formed; write rounds
	// until one GSO message was tried (the first is refused), each round
	// arriving whole.
	for round := 0; round < 50 && !c.noGSO.Load(); round++ {
		var want [][]byte
		for i := range 10 {
			p := packet(round*100+i, 1000)
			_, _, err := c.WriteMsgUDP(p, nil, to)
			require.NoError(t, err)
			want = append(want, p)
		}
		receive(t, rx, want)
	}
	after := Stats()
	require.True(t, c.noGSO.Load(), "GSO off for this socket")
	require.Equal(t, uint64(1), after.ClientGSORefusals-before.ClientGSORefusals)
	require.Zero(t, after.ClientDropped-before.ClientDropped)
	require.False(t, gsoDisabled.Load(), "the target sockets keep GSO")
}

// TestQUICConnCloseWhileWriting: Close during writes from several
// goroutines ends every writer (queued or refused) and the flusher.
func TestQUICConnCloseWhileWriting(t *testing.T) {
	c, rx := quicPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	to := rx.LocalAddr().(*net.UDPAddr)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if _, _, err := c.WriteMsgUDP(packet(w*1_000_000+i, 1200), nil, to); err != nil {
					require.ErrorIs(t, err, net.ErrClosed)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	wg.Wait()
	select {
	case <-c.finished:
	default:
		t.Fatal("the flusher is still running")
	}
}

// TestPutSockaddr: the address is laid out for the socket's family, an
// IPv4 address IPv4-mapped on an IPv6 socket.
func TestPutSockaddr(t *testing.T) {
	var sa [unix.SizeofSockaddrInet6]byte
	v4 := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
	require.Equal(t, uint32(unix.SizeofSockaddrInet4), putSockaddr(&sa, unix.AF_INET, v4))
	r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
	require.Equal(t, uint16(unix.AF_INET), r4.Family)
	require.Equal(t, [4]byte{192, 0, 2, 1}, r4.Addr)
	require.Equal(t, [2]byte{0x01, 0xbb}, *(*[2]byte)(unsafe.Pointer(&r4.Port)), "network byte order")

	require.Equal(t, uint32(unix.SizeofSockaddrInet6), putSockaddr(&sa, unix.AF_INET6, v4))
	r6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
	require.Equal(t, uint16(unix.AF_INET6), r6.Family)
	require.Equal(t, net.IPv4(192, 0, 2, 1).To16(), net.IP(r6.Addr[:]), "IPv4-mapped")

	require.Zero(t, putSockaddr(&sa, unix.AF_INET, &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}), "an IPv6 address on an IPv4 socket")
	require.Zero(t, putSockaddr(&sa, unix.AF_INET6, &net.UDPAddr{Port: 1}), "no address")
}
