package bench

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/bench/baseline"
)

// TestHarness checks the pieces the benchmarks rely on, for every
// implementation (and under -race, which the benchmarks never run with):
// the setup routes to every slot, settle sees every datagram accounted for,
// the churner replaces sessions and stops, and latency stamps are read back.
func TestHarness(t *testing.T) {
	for _, im := range baseline.Impls {
		t.Run(im.Name, func(t *testing.T) {
			s, err := newSetup(setupKey{impl: im.Name, sessions: 64, latency: true})
			require.NoError(t, err)
			defer s.r.Close()

			c := startChurner(s, 2000)
			rnd := newRng(1)
			const n = 20_000
			for i := range n {
				d := getPayload()
				binary.LittleEndian.PutUint64(d, uint64(stamp()))
				s.r.Dispatch(s.ids[rnd.intn(uint64(len(s.ids)))].Load(), d)
				if i%readBatch == 0 {
					time.Sleep(10 * time.Microsecond) // let consumers and the churner run
				}
			}
			s.dispatched.Add(n)
			// At 2000/s the churner owes a replacement every 0.5 ms; give it
			// a few ticks even when the loop above ran faster than that.
			time.Sleep(20 * time.Millisecond)
			rate, err := c.stop()
			require.NoError(t, err)
			require.Positive(t, rate, "churner made no replacement")

			s.settle()
			delivered, batches := s.counts()
			done := delivered + s.r.Dropped()
			if im.Name == "syncmap" || im.Name == "xsync" {
				require.LessOrEqual(t, done, uint64(n)) // may lose some to the removal race
			} else {
				require.Equal(t, uint64(n), done, "delivered + dropped")
			}
			require.Positive(t, delivered)
			require.Positive(t, batches)
			p50, _, p999 := s.lat.quantiles()
			require.Positive(t, p50)
			require.GreaterOrEqual(t, p999, p50)
		})
	}
}

func TestRngCoversRange(t *testing.T) {
	r := newRng(0)
	var seen [10]int
	for range 10_000 {
		seen[r.intn(10)]++
	}
	for i, n := range seen {
		require.Greater(t, n, 800, "value %d", i)
	}
	r = newRng(7)
	require.Zero(t, r.intn(1))
}
