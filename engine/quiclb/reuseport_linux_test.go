package quiclb

import (
	"context"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// receiver reads every socket of an instance and reports which one got
// each packet.
type receiver struct {
	got chan int
}

func newReceiver(t *testing.T, conns []*net.UDPConn) *receiver {
	r := &receiver{got: make(chan int, 1024)}
	for i, c := range conns {
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromUDP(buf); err != nil {
					return // closed
				}
				r.got <- i
			}
		}()
	}
	return r
}

// which sends pkt to addr from a fresh socket (a fresh source port) and
// returns the index of the socket of rs that got it: rs[k]'s sockets are
// numbered from k*1000.
func which(t *testing.T, addr net.Addr, pkt []byte, rs ...*receiver) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WriteTo(pkt, addr)
	require.NoError(t, err)
	timeout := time.After(2 * time.Second)
	for {
		for k, r := range rs {
			select {
			case i := <-r.got:
				return k*1000 + i
			default:
			}
		}
		select {
		case <-timeout:
			t.Fatalf("no socket got the packet %x", pkt)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestKernelSteersByTransport(t *testing.T) {
	s, err := Open(context.Background(), OpenConfig{Addr: "127.0.0.1:0", ServerID: sidA, Transports: 4})
	require.NoError(t, err)
	defer s.Close()
	require.True(t, s.Steered, "steering refused: %v", s.SteerErr)
	require.Len(t, s.Conns, 4)
	addr := s.Conns[0].LocalAddr()
	r := newReceiver(t, s.Conns)
	for tr := range 4 {
		for range 10 { // ten source ports each: the hash would spread them
			require.Equal(t, tr, which(t, addr, shortPacket(cidFor(sidA, byte(tr))), r))
			require.Equal(t, tr, which(t, addr, longPacket(typeHandshake, cidFor(sidA, byte(tr)), nil), r))
		}
	}
	// Unsteerable packets get the program's out-of-range answer: the
	// kernel hashes them instead of dropping them, over every socket.
	spread := make(map[int]int)
	for range 64 {
		spread[which(t, addr, longPacket(typeInitial, []byte("client-chosen-16"), nil), r)]++
		spread[which(t, addr, shortPacket(cidFor(sidB, 0)), r)]++
	}
	require.Greater(t, len(spread), 1, "fallback packets all went to one socket: %v", spread)
}

func TestKernelSteersAGroupAcrossLeaves(t *testing.T) {
	file := filepath.Join(t.TempDir(), "group")
	ctx := context.Background()
	a, err := Open(ctx, OpenConfig{Addr: "127.0.0.1:0", ServerID: sidA, Transports: 2, GroupFile: file})
	require.NoError(t, err)
	addr := a.Conns[0].LocalAddr().String()
	b, err := Open(ctx, OpenConfig{Addr: addr, ServerID: sidB, Transports: 3, GroupFile: file})
	require.NoError(t, err)
	defer b.Close()
	ra, rb := newReceiver(t, a.Conns), newReceiver(t, b.Conns)
	check := func(name string, sid ServerID, n, base int, rs ...*receiver) {
		t.Helper()
		for tr := range n {
			for range 5 {
				require.Equal(t, base+tr, which(t, a.Conns[0].LocalAddr(), shortPacket(cidFor(sid, byte(tr))), rs...), "%s transport %d", name, tr)
			}
		}
	}
	check("A", sidA, 2, 0, ra, rb)
	check("B", sidB, 3, 1000, ra, rb)

	// A leaves: its sockets close, the kernel moves B's last sockets
	// into their slots, and the program A attached first follows.
	require.NoError(t, a.Close())
	check("B after A left", sidB, 3, 0, rb)

	c, err := Open(ctx, OpenConfig{Addr: addr, ServerID: sidA, Transports: 2, GroupFile: file})
	require.NoError(t, err)
	defer c.Close()
	rc := newReceiver(t, c.Conns)
	check("B after A came back", sidB, 3, 0, rb, rc)
	check("A again", sidA, 2, 1000, rb, rc)
	_, err = Open(ctx, OpenConfig{Addr: addr, ServerID: sidA, Transports: 1, GroupFile: file})
	require.ErrorContains(t, err, "already")
}

func TestOpenRefusesABusyPort(t *testing.T) {
	// Someone else's reuseport socket on the port: without the check,
	// Open would join its group and take a share of its packets.
	other, err := ListenGroup(context.Background(), "127.0.0.1:0", 1)
	require.NoError(t, err)
	defer closeAll(other)
	_, err = Open(context.Background(), OpenConfig{Addr: other[0].LocalAddr().String(), ServerID: sidA, Transports: 2})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
}
