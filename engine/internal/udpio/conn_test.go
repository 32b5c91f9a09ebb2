package udpio

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	networks = []string{"udp4", "udp6"}
	modes    = []struct {
		name   string
		single bool
	}{{"mmsg", false}, {"single", true}}
)

// TestEcho sends batches from a to b and back, both directions checked
// byte for byte, over both families and both data paths.
func TestEcho(t *testing.T) {
	for _, network := range networks {
		for _, mode := range modes {
			for _, size := range []int{1, 7, 32} {
				t.Run(fmt.Sprintf("%s/%s/batch=%d", network, mode.name, size), func(t *testing.T) {
					a, b := newPair(t, network, mode.single)
					rng := rand.New(rand.NewPCG(uint64(size), 1))
					for range 3 {
						want := datagrams(rng, size, 1500)

						n, tooLarge, err := a.WriteBatch(want)
						require.NoError(t, err)
						require.Equal(t, size, n)
						require.Zero(t, tooLarge)
						got := readN(t, b, size)
						require.Equal(t, want, got)

						n, tooLarge, err = b.WriteBatch(got)
						require.NoError(t, err)
						require.Equal(t, size, n)
						require.Zero(t, tooLarge)
						require.Equal(t, want, readN(t, a, size))
					}
					if mode.single {
						require.False(t, a.batched())
					}
				})
			}
		}
	}
}

// TestWriteLargerThanBatch writes more than IdealBatchSize datagrams in one
// call; they go out in chunks.
func TestWriteLargerThanBatch(t *testing.T) {
	a, b := newPair(t, "udp4", false)
	want := datagrams(rand.New(rand.NewPCG(2, 2)), 2*IdealBatchSize+5, 1200)
	n, tooLarge, err := a.WriteBatch(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.Zero(t, tooLarge)
	require.Equal(t, want, readN(t, b, len(want)))
}

func TestAddrs(t *testing.T) {
	for _, network := range networks {
		a, b := newPair(t, network, false)
		require.Equal(t, a.RemoteAddr(), b.LocalAddr())
		require.Equal(t, b.RemoteAddr(), a.LocalAddr())
		require.Equal(t, network == "udp4", a.LocalAddr().Addr().Is4())
	}
	// An IPv4-mapped IPv6 target is dialled as IPv4.
	dead := deadPort(t, "udp4")
	c, err := Dial(context.Background(), netip.AddrPortFrom(netip.AddrFrom16(dead.Addr().As16()), dead.Port()))
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, dead, c.RemoteAddr())

	_, err = Dial(context.Background(), netip.AddrPort{})
	require.Error(t, err)
}

// TestTargetUnreachable: after a datagram to a port with nothing behind it,
// the ICMP port unreachable comes back as ErrTargetUnreachable on the next
// read, and on a later write, which does not send its datagram.
func TestTargetUnreachable(t *testing.T) {
	for _, network := range networks {
		for _, mode := range modes {
			t.Run(network+"/"+mode.name, func(t *testing.T) {
				c, err := Dial(context.Background(), deadPort(t, network))
				require.NoError(t, err)
				defer c.Close()
				if mode.single {
					c.forceSingle()
				}
				buf := []byte("anyone there?")

				// Read side.
				require.NoError(t, c.Write(buf))
				require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
				n, _, err := c.ReadBatch([][]byte{make([]byte, 64)}, make([]int, 1))
				require.Zero(t, n)
				require.ErrorIs(t, err, ErrTargetUnreachable)
				require.ErrorIs(t, err, syscall.ECONNREFUSED)

				// Write side: the error is reported once, on whichever
				// write comes after the ICMP message.
				require.NoError(t, c.Write(buf))
				deadline := time.Now().Add(5 * time.Second)
				for {
					n, tooLarge, err := c.WriteBatch([][]byte{buf, buf})
					if err != nil {
						require.ErrorIs(t, err, ErrTargetUnreachable)
						require.ErrorIs(t, err, syscall.ECONNREFUSED)
						require.Zero(t, n, "the refused write sent nothing")
						require.Zero(t, tooLarge)
						break
					}
					require.True(t, time.Now().Before(deadline), "no ICMP error reported")
					time.Sleep(time.Millisecond)
				}
			})
		}
	}
}

// TestTooLargeInBatch: oversize datagrams in a batch are dropped and
// counted, and the datagrams around them are still sent.
func TestTooLargeInBatch(t *testing.T) {
	for _, network := range networks {
		for _, mode := range modes {
			t.Run(network+"/"+mode.name, func(t *testing.T) {
				a, b := newPair(t, network, mode.single)
				huge := make([]byte, 70000) // above UDP's 65535-byte length limit
				small := datagrams(rand.New(rand.NewPCG(3, 3)), 3, 100)
				bufs := [][]byte{small[0], huge, small[1], huge, small[2]}

				n, tooLarge, err := a.WriteBatch(bufs)
				require.NoError(t, err)
				require.Equal(t, len(bufs), n)
				require.Equal(t, 2, tooLarge)
				require.Equal(t, small, readN(t, b, 3))

				err = a.Write(huge)
				require.ErrorIs(t, err, ErrTooLarge)
				require.ErrorIs(t, err, syscall.EMSGSIZE)
				require.NoError(t, a.Write(small[0]))
				require.Equal(t, small[:1], readN(t, b, 1))
			})
		}
	}
}

func TestReadDeadline(t *testing.T) {
	a, _ := newPair(t, "udp4", false)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	n, _, err := a.ReadBatch([][]byte{make([]byte, 64)}, make([]int, 1))
	require.Zero(t, n)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestReadNoRoom(t *testing.T) {
	a, _ := newPair(t, "udp4", false)
	n, _, err := a.ReadBatch(nil, nil)
	require.Zero(t, n)
	require.NoError(t, err)
}

// TestCloseUnblocksRead: Close wakes a ReadBatch blocked on an idle socket.
func TestCloseUnblocksRead(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, _ := newPair(t, "udp4", mode.single)
			done := make(chan error)
			go func() {
				_, _, err := a.ReadBatch([][]byte{make([]byte, 64)}, make([]int, 1))
				done <- err
			}()
			time.Sleep(20 * time.Millisecond) // let it block in the poller
			require.NoError(t, a.Close())
			select {
			case err := <-done:
				require.True(t, isClosed(err), "got %v", err)
			case <-time.After(2 * time.Second):
				t.Fatal("ReadBatch still blocked after Close")
			}
			require.NoError(t, a.Close(), "Close is idempotent")
			_, _, err := a.WriteBatch([][]byte{{1}})
			require.True(t, isClosed(err), "got %v", err)
		})
	}
}

// TestConcurrentReadWrite runs a's reader and writer on their own
// goroutines while b echoes, with a window that keeps the socket buffers
// from overflowing so that no datagram is lost.
func TestConcurrentReadWrite(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := newPair(t, "udp4", mode.single)
			const total, window = 3000, 64
			tokens := make(chan struct{}, window)
			for range window {
				tokens <- struct{}{}
			}

			echoDone := make(chan error, 1)
			go func() { echoDone <- echo(b) }()

			writeDone := make(chan error, 1)
			go func() {
				rng := rand.New(rand.NewPCG(4, 4))
				var bufs [][]byte
				for seq := 0; seq < total; {
					bufs = bufs[:0]
					for k := 1 + rng.IntN(IdealBatchSize); k > 0 && seq < total; k-- {
						<-tokens
						bufs = append(bufs, stamp(seq, 1+rng.IntN(1400)))
						seq++
					}
					if _, _, err := a.WriteBatch(bufs); err != nil {
						writeDone <- err
						return
					}
				}
				writeDone <- nil
			}()

			seen := make([]bool, total)
			bufs := make([][]byte, IdealBatchSize)
			for i := range bufs {
				bufs[i] = make([]byte, MaxPayload)
			}
			sizes := make([]int, IdealBatchSize)
			require.NoError(t, a.SetReadDeadline(time.Now().Add(20*time.Second)))
			for got := 0; got < total; {
				n, _, err := a.ReadBatch(bufs, sizes)
				require.NoError(t, err)
				for i := range n {
					seq, ok := checkStamp(bufs[i][:sizes[i]])
					require.True(t, ok, "corrupt datagram")
					require.False(t, seen[seq], "duplicate %d", seq)
					seen[seq] = true
					got++
					tokens <- struct{}{}
				}
			}
			require.NoError(t, <-writeDone)
			require.NoError(t, b.Close())
			require.True(t, isClosed(<-echoDone))
		})
	}
}

// echo sends back everything c reads until c fails.
func echo(c *Conn) error {
	bufs := make([][]byte, IdealBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, MaxPayload)
	}
	sizes := make([]int, IdealBatchSize)
	out := make([][]byte, IdealBatchSize)
	for {
		n, _, err := c.ReadBatch(bufs, sizes)
		if err != nil {
			return err
		}
		for i := range n {
			out[i] = bufs[i][:sizes[i]]
		}
		if _, _, err := c.WriteBatch(out[:n]); err != nil {
			return err
		}
	}
}

// stamp returns a datagram of size bytes (at least 4) that carries seq
// and a pattern derived from it.
func stamp(seq, size int) []byte {
	b := make([]byte, max(size, 4))
	b[0], b[1], b[2], b[3] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	for i := 4; i < len(b); i++ {
		b[i] = byte(seq + i)
	}
	return b
}

func checkStamp(b []byte) (seq int, ok bool) {
	if len(b) < 4 {
		return 0, false
	}
	seq = int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	for i := 4; i < len(b); i++ {
		if b[i] != byte(seq+i) {
			return 0, false
		}
	}
	return seq, true
}

// TestZeroAllocs: a warm round trip of a full batch, out with WriteBatch
// and in with ReadBatch, allocates nothing; nor does Write.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; make norace runs this")
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := newPair(t, "udp4", mode.single)
			out := datagrams(rand.New(rand.NewPCG(5, 5)), IdealBatchSize, 1400)
			in := make([][]byte, IdealBatchSize)
			for i := range in {
				in[i] = make([]byte, MaxPayload)
			}
			sizes := make([]int, IdealBatchSize)
			var failed error
			roundTrip := func() {
				if _, _, err := a.WriteBatch(out); err != nil {
					failed = err
					return
				}
				for got := 0; got < len(out); {
					n, _, err := b.ReadBatch(in, sizes)
					if err != nil {
						failed = err
						return
					}
					got += n
				}
			}
			require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
			// Warm up: buffers, and the pools of system call state. A
			// pool's per-P private slot cannot be stolen, so while the
			// goroutine migrates between Ps the pools fill until every P
			// has a call state to spare; from then on nothing allocates.
			for range 200 {
				roundTrip()
			}
			require.Zero(t, testing.AllocsPerRun(50, roundTrip))
			require.NoError(t, failed)

			write := func() {
				if err := a.Write(out[0]); err != nil {
					failed = err
				}
				if _, _, err := b.ReadBatch(in, sizes); err != nil {
					failed = err
				}
			}
			require.Zero(t, testing.AllocsPerRun(50, write))
			require.NoError(t, failed)
		})
	}
}

func TestErrorClasses(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		err := classify("read", os.NewSyscallError("recvmsg", errno))
		require.ErrorIs(t, err, ErrTargetUnreachable)
		require.ErrorIs(t, err, errno)
		require.NotErrorIs(t, err, ErrTooLarge)
	}
	err := classify("write", syscall.EMSGSIZE)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, "udpio: datagram too large: write: message too long", err.Error())
	require.NoError(t, classify("write", syscall.EPERM))
	require.False(t, errors.Is(classify("write", syscall.EPERM), ErrTooLarge))
}
