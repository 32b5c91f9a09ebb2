//go:build linux

package udpio

import (
	"bytes"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireGSO skips the test if the kernel has no UDP_SEGMENT.
func requireGSO(t *testing.T, c *Conn) {
	t.Helper()
	if !c.gsoAllowed() {
		t.Skip("GSO is off on this host")
	}
}

// TestGSOCmsgLayout: the segment size sits where the kernel reads it.
func TestGSOCmsgLayout(t *testing.T) {
	require.Equal(t, uintptr(unix.CmsgLen(0)), unsafe.Offsetof(gsoCmsg{}.size))
	require.LessOrEqual(t, gsoCmsgSpace, int(unsafe.Sizeof(gsoCmsg{})))
}

// sizesOf returns datagrams of the given sizes, each byte numbered so a
// misplaced boundary shows.
func sizesOf(sizes ...int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, size := range sizes {
		out[i] = make([]byte, size)
		for j := range out[i] {
			out[i][j] = byte(i*31 + j)
		}
	}
	return out
}

// requireDatagrams fails unless got is want, datagram for datagram; it
// names the first difference instead of dumping both.
func requireDatagrams(t *testing.T, want, got [][]byte) {
	t.Helper()
	require.Equal(t, len(want), len(got), "datagram count")
	for i := range want {
		if !bytes.Equal(want[i], got[i]) {
			t.Fatalf("datagram %d: want %d bytes, got %d (or different bytes)", i, len(want[i]), len(got[i]))
		}
	}
}

// TestGSOPack: runs are cut where the invariants say.
func TestGSOPack(t *testing.T) {
	w := writeCalls.Get().(*writeCall)
	defer writeCalls.Put(w)
	for _, tc := range []struct {
		name  string
		sizes []int
		segs  []uint8 // datagrams per message
	}{
		{"equal", []int{1200, 1200, 1200}, []uint8{3}},
		{"shorter last", []int{1200, 1200, 800, 1200}, []uint8{3, 1}},
		{"longer starts a run", []int{800, 1200, 1200}, []uint8{1, 2}},
		{"zero alone", []int{0, 0, 5, 5, 0}, []uint8{1, 1, 2, 1}},
		{"singles", []int{1, 2, 3}, []uint8{1, 1, 1}},
		{"byte limit", []int{30000, 30000, 30000}, []uint8{2, 1}},
		{"batch limit", make([]int, 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sizes, segs := tc.sizes, tc.segs
			if tc.name == "batch limit" {
				for range IdealBatchSize + 5 {
					sizes = append(sizes, 100)
				}
				segs = []uint8{IdealBatchSize}
			}
			bufs := sizesOf(sizes...)
			dgrams, msgs := w.pack(bufs, true, true)
			w.unload(dgrams)
			require.Equal(t, segs, w.gso.segs[:msgs])
			want := 0
			for _, k := range segs {
				want += int(k)
			}
			require.Equal(t, want, dgrams)
			for i := range msgs {
				h := &w.hdrs[i].Hdr
				require.Equal(t, uint64(segs[i]), uint64(h.Iovlen))
				require.Equal(t, segs[i] > 1, h.Control != nil)
			}
			// Without GSO every datagram is its own message; without
			// batch there is one message.
			dgrams, msgs = w.pack(bufs, false, true)
			w.unload(dgrams)
			require.Equal(t, min(len(bufs), IdealBatchSize), msgs)
			dgrams, msgs = w.pack(bufs, true, false)
			w.unload(dgrams)
			require.Equal(t, 1, msgs)
			require.Equal(t, int(segs[0]), dgrams)
		})
	}
}

// gsoPattern is a batch with runs of every shape: full runs, a shorter
// last segment, a run cut by a longer datagram, a zero-length datagram.
func gsoPattern() [][]byte {
	var sizes []int
	for range 10 {
		sizes = append(sizes, 1200)
	}
	sizes = append(sizes, 700) // shorter last of the run above
	for range 5 {
		sizes = append(sizes, 1400)
	}
	sizes = append(sizes, 1, 0, 1000, 1000, 999, 1500, 1500)
	for range 40 { // longer than one call's worth
		sizes = append(sizes, 1100)
	}
	sizes = append(sizes, 13)
	return sizesOf(sizes...)
}

// TestGSOSend: a batch with runs arrives datagram for datagram, boundaries
// intact, in fewer messages than datagrams.
func TestGSOSend(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			a, b := newPair(t, network, false)
			requireGSO(t, a)
			want := gsoPattern()
			before := Stats()
			n, tooLarge, err := a.WriteBatch(want)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Zero(t, tooLarge)
			after := Stats()
			requireDatagrams(t, want, readN(t, b, len(want)))

			require.False(t, after.GSODisabled)
			require.Equal(t, before.GSORefusals, after.GSORefusals)
			require.EqualValues(t, len(want), after.WriteDatagrams-before.WriteDatagrams)
			require.Greater(t, after.GSOSends, before.GSOSends)
			require.Less(t, after.WriteSyscalls-before.WriteSyscalls, uint64(len(want)))
			t.Logf("%d datagrams: %d syscalls, %d GSO messages carrying %d datagrams",
				len(want), after.WriteSyscalls-before.WriteSyscalls,
				after.GSOSends-before.GSOSends, after.GSODatagrams-before.GSODatagrams)
		})
	}
}

// TestGSOSingle: with sendmmsg off, GSO runs go out in one sendmsg each.
func TestGSOSingle(t *testing.T) {
	a, b := newPair(t, "udp4", true)
	requireGSO(t, a)
	want := gsoPattern()
	before := Stats()
	n, _, err := a.WriteBatch(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	requireDatagrams(t, want, readN(t, b, len(want)))
	require.Greater(t, Stats().GSOSends, before.GSOSends)
}

// TestGSOFallback: a kernel that refuses GSO for every socket (EIO from a
// device that cannot checksum) turns it off for the process, counted, and
// not one datagram is lost; EINVAL turns it off for that Conn only.
func TestGSOFallback(t *testing.T) {
	for _, tc := range []struct {
		errno  unix.Errno
		global bool
	}{{unix.EIO, true}, {unix.ENOPROTOOPT, true}, {unix.EINVAL, false}} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			a, b := newPair(t, "udp4", false)
			other, _ := newPair(t, "udp4", false)
			requireGSO(t, a)
			defer gsoDisabled.Store(false)
			a.failGSO(tc.errno)
			want := gsoPattern()
			before := Stats()
			n, tooLarge, err := a.WriteBatch(want)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Zero(t, tooLarge)
			requireDatagrams(t, want, readN(t, b, len(want)))
			after := Stats()
			require.Equal(t, before.GSORefusals+1, after.GSORefusals)
			require.Equal(t, before.GSOSends, after.GSOSends)
			require.EqualValues(t, len(want), after.WriteDatagrams-before.WriteDatagrams)
			require.False(t, a.gsoAllowed())
			require.Equal(t, tc.global, after.GSODisabled)
			require.Equal(t, !tc.global, other.gsoAllowed())

			// Later batches go without GSO and without further refusals.
			n, _, err = a.WriteBatch(want)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			requireDatagrams(t, want, readN(t, b, len(want)))
			require.Equal(t, after.GSORefusals, Stats().GSORefusals)
		})
	}
}

// TestGSOPartialRefusal: a refusal of a GSO run after other messages of
// the same sendmmsg went out loses nothing either: the hook cuts the
// call before the run, as sendmmsg does, and fails the next.
func TestGSOPartialRefusal(t *testing.T) {
	a, b := newPair(t, "udp4", false)
	requireGSO(t, a)
	defer gsoDisabled.Store(false)
	a.failGSO(unix.EIO)
	want := sizesOf(5, 6, 7, 100, 100, 100, 8)
	n, _, err := a.WriteBatch(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	requireDatagrams(t, want, readN(t, b, len(want)))
}

// TestGSOZeroAllocs: a warm WriteBatch of equal-size datagrams, which goes
// out as GSO, allocates nothing.
func TestGSOZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; make norace runs this")
	}
	a, b := newPair(t, "udp4", false)
	requireGSO(t, a)
	out := sizesOf(make([]int, IdealBatchSize)...)
	for i := range out {
		out[i] = make([]byte, 1200)
	}
	in := make([][]byte, IdealBatchSize)
	for i := range in {
		in[i] = make([]byte, MaxPayload)
	}
	sizes := make([]int, IdealBatchSize)
	require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
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
	roundTrip()
	before := Stats().GSOSends
	require.Zero(t, testing.AllocsPerRun(50, roundTrip))
	require.NoError(t, failed)
	require.Greater(t, Stats().GSOSends, before)
}
