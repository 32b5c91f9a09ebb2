package udpio

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loopback returns the loopback address of network ("udp4" or "udp6"),
// skipping the test if the host has no IPv6 loopback.
func loopback(t testing.TB, network string) netip.Addr {
	if network == "udp4" {
		return netip.MustParseAddr("127.0.0.1")
	}
	l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	l.Close()
	return netip.IPv6Loopback()
}

// newPair returns two Conns on loopback connected to each other: a from
// Dial, b wrapped around a socket bound to the port a dialled. Single
// selects the one-syscall-per-datagram path on both.
func newPair(t testing.TB, network string, single bool) (a, b *Conn) {
	t.Helper()
	ip := loopback(t, network)
	// Reserve a port for b, dial a to it, then bind b to that port,
	// connected to a. Nothing is sent before b exists.
	l, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	require.NoError(t, err)
	bAddr := l.LocalAddr().(*net.UDPAddr).AddrPort()
	a, err = Dial(context.Background(), bAddr)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	uc, err := net.DialUDP(network, net.UDPAddrFromAddrPort(bAddr), net.UDPAddrFromAddrPort(a.LocalAddr()))
	require.NoError(t, err)
	b, err = newConn(uc)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	if single {
		a.forceSingle()
		b.forceSingle()
	}
	return a, b
}

// deadPort returns a loopback address with nothing listening on it.
func deadPort(t testing.TB, network string) netip.AddrPort {
	l, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback(t, network), 0)))
	require.NoError(t, err)
	addr := l.LocalAddr().(*net.UDPAddr).AddrPort()
	require.NoError(t, l.Close())
	return addr
}

// datagrams returns count random datagrams with sizes in [1, maxSize],
// the first 1 byte and the last maxSize bytes long.
func datagrams(rng *rand.Rand, count, maxSize int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		size := 1 + rng.IntN(maxSize)
		switch {
		case i == 0:
			size = 1
		case i == count-1:
			size = maxSize
		}
		out[i] = make([]byte, size)
		for j := range out[i] {
			out[i][j] = byte(rng.Uint32())
		}
	}
	return out
}

// readN reads exactly want datagrams from c into fresh Buffers and
// returns copies, failing the test on an error or after a few seconds.
func readN(t testing.TB, c *Conn, want int) [][]byte {
	t.Helper()
	var pool Pool
	bufs := make([][]byte, IdealBatchSize)
	held := make([]*Buffer, IdealBatchSize)
	for i := range bufs {
		held[i] = pool.Get()
		bufs[i] = held[i].Payload()
	}
	defer func() {
		for _, b := range held {
			pool.Put(b)
		}
	}()
	sizes := make([]int, IdealBatchSize)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	defer c.SetReadDeadline(time.Time{})
	var got [][]byte
	for len(got) < want {
		n, truncated, err := c.ReadBatch(bufs[:min(len(bufs), want-len(got))], sizes)
		require.NoError(t, err)
		require.Zero(t, truncated)
		require.Positive(t, n)
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
		}
	}
	return got
}

// isClosed reports whether err says the Conn was closed.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
