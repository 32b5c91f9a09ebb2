package baseline

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEngineDispatchZeroAllocs asserts that engine.Router.Dispatch to an
// active session allocates nothing, whether the ring takes the datagram or
// refuses it, called directly and through the adapter.
func TestEngineDispatchZeroAllocs(t *testing.T) {
	r := NewEngine(Config{QueueCap: 128})
	defer r.Close()
	require.NoError(t, r.Add(4, consumerFunc(func([][]byte) {})))
	e := Engine(r)
	d := make([]byte, 1200)
	require.Zero(t, testing.AllocsPerRun(10000, func() { e.Dispatch(4, d) }), "engine.Router.Dispatch")
	require.Zero(t, testing.AllocsPerRun(10000, func() { r.Dispatch(4, d) }), "adapter Dispatch")
	require.Zero(t, testing.AllocsPerRun(1000, func() { e.Dispatch(8, d) }), "Dispatch to an unknown stream")
}

// TestBaselineDispatchAllocs records what each baseline's Dispatch
// allocates. It asserts nothing for the baselines (their allocations are
// a property of their design, reported by the benchmarks); it is here so a
// change in them shows up in -v output.
func TestBaselineDispatchAllocs(t *testing.T) {
	for _, im := range Impls {
		r := im.New(Config{QueueCap: 128})
		require.NoError(t, r.Add(1<<20, consumerFunc(func([][]byte) {})))
		d := make([]byte, 1200)
		n := testing.AllocsPerRun(10000, func() { r.Dispatch(1<<20, d) })
		t.Logf("%-12s %.2f allocs per Dispatch", im.Name, n)
		r.Close()
	}
}
