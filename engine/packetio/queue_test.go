package packetio

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQueueDoublePutPanics(t *testing.T) {
	q := newPacketQueue(2, 8)
	s := q.tryGet()
	require.NotNil(t, s)
	q.put(s)
	require.PanicsWithValue(t, "packetio: slot released twice", func() { q.put(s) })
}

func TestQueueClosedDiscards(t *testing.T) {
	q := newPacketQueue(2, 8)
	s := q.tryGet()
	s.n = copy(s.buf, "abc")
	q.push(s)
	q.close()
	q.close()
	_, err := q.read([][]byte{make([]byte, 8)}, []int{0})
	require.ErrorIs(t, err, net.ErrClosed)
}

// The queue against a plain slice under random operations: FIFO order, the
// bound, and what gets dropped.
func TestQueueDifferential(t *testing.T) {
	const slots, size = 16, 8
	rng := rand.New(rand.NewPCG(1, 2))
	q := newPacketQueue(slots, size)
	var ref []uint64
	next := uint64(0)
	bufs := make([][]byte, slots+3)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	sizes := make([]int, len(bufs))
	for range 20000 {
		if rng.IntN(2) == 0 {
			s := q.tryGet()
			if len(ref) == slots {
				require.Nil(t, s, "got a slot from a full queue")
				continue
			}
			require.NotNil(t, s)
			binary.LittleEndian.PutUint64(s.buf, next)
			s.n = size
			q.push(s)
			ref = append(ref, next)
			next++
			continue
		}
		if len(ref) == 0 {
			continue // read would block
		}
		batch := 1 + rng.IntN(len(bufs))
		n, err := q.read(bufs[:batch], sizes)
		require.NoError(t, err)
		require.Equal(t, min(batch, len(ref)), n)
		for i := range n {
			require.Equal(t, size, sizes[i])
			require.Equal(t, ref[i], binary.LittleEndian.Uint64(bufs[i]))
		}
		ref = ref[n:]
	}
}
