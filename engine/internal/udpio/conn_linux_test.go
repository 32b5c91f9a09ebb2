//go:build linux

package udpio

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestBatchedByDefault: on Linux a fresh Conn uses recvmmsg and sendmmsg,
// and still does after traffic, unless the kernel refused them.
func TestBatchedByDefault(t *testing.T) {
	a, b := newPair(t, "udp4", false)
	want := datagrams(rand.New(rand.NewPCG(6, 6)), 5, 100)
	_, _, err := a.WriteBatch(want)
	require.NoError(t, err)
	require.Equal(t, want, readN(t, b, len(want)))
	if mmsgDisabled.Load() {
		t.Log("kernel refused recvmmsg/sendmmsg: running on the fallback")
		require.False(t, a.batched())
		return
	}
	require.True(t, a.batched())
	require.True(t, b.batched())
}

// TestTruncatedDropped: a datagram longer than its buffer is dropped and
// counted, and the datagrams after it move up to close the gap.
func TestTruncatedDropped(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := newPair(t, "udp4", mode.single)
			small := datagrams(rand.New(rand.NewPCG(7, 7)), 3, 100)
			long := make([]byte, MaxPayload+1)
			_, _, err := b.WriteBatch([][]byte{small[0], long, small[1], long, long, small[2]})
			require.NoError(t, err)

			var pool Pool
			bufs := make([][]byte, 8)
			for i := range bufs {
				bufs[i] = pool.Get().Payload()
			}
			sizes := make([]int, len(bufs))
			require.NoError(t, a.SetReadDeadline(time.Now().Add(5*time.Second)))
			var got [][]byte
			dropped := 0
			for len(got) < len(small) {
				n, truncated, err := a.ReadBatch(bufs, sizes)
				require.NoError(t, err)
				dropped += truncated
				for i := range n {
					got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
				}
			}
			require.Equal(t, small, got)
			require.Equal(t, 3, dropped)
		})
	}
}

// TestTruncatedOnly: a batch of nothing but truncated datagrams does not
// end ReadBatch; it waits for one that fits.
func TestTruncatedOnly(t *testing.T) {
	a, b := newPair(t, "udp4", false)
	require.NoError(t, b.Write(make([]byte, 200)))
	go func() {
		time.Sleep(20 * time.Millisecond)
		b.Write([]byte("fits"))
	}()
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	sizes := make([]int, 2)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, truncated, err := a.ReadBatch(bufs, sizes)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, truncated)
	require.Equal(t, "fits", string(bufs[0][:sizes[0]]))
}

// TestMmsgDisabled: once the package has met a refusal, every Conn, open
// or new, runs on single system calls and still echoes.
func TestMmsgDisabled(t *testing.T) {
	require.True(t, refused(unix.ENOSYS))
	require.True(t, refused(unix.EOPNOTSUPP))
	require.False(t, refused(unix.EPERM))

	open, _ := newPair(t, "udp4", false)
	mmsgDisabled.Store(true)
	defer mmsgDisabled.Store(false)
	require.False(t, open.batched())
	a, b := newPair(t, "udp4", false)
	require.False(t, a.batched())
	want := datagrams(rand.New(rand.NewPCG(8, 8)), 7, 1500)
	n, _, err := a.WriteBatch(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.Equal(t, want, readN(t, b, len(want)))
}
