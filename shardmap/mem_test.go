package shardmap

import (
	"runtime"
	"testing"
)

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestMemoryEmptyMap measures what an empty map costs: it matters when a
// proxy keeps one per connection.
func TestMemoryEmptyMap(t *testing.T) {
	const n = 20_000
	for _, tc := range []struct {
		shards int
		bound  int64
	}{{1, 160}, {8, 400}} {
		maps := make([]*Map[int], n)
		before := heapInUse()
		for i := range maps {
			maps[i] = New[int](WithShards(tc.shards))
		}
		per := (heapInUse() - before) / n
		runtime.KeepAlive(maps)
		t.Logf("empty map, %d shards: %d B", tc.shards, per)
		if per > tc.bound {
			t.Errorf("empty map, %d shards: %d B, want <= %d", tc.shards, per, tc.bound)
		}
	}
}

// TestMemoryPerEntry measures heap bytes per entry (the map's own memory:
// all entries share one value) as the map grows, and after a burst drains.
func TestMemoryPerEntry(t *testing.T) {
	sizes := []int{1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000}
	switch {
	case testing.Short():
		sizes = sizes[:4]
	case raceEnabled:
		sizes = sizes[:6]
	}
	v := ptr(0)
	lo, hi := 1e9, 0.0
	for _, n := range sizes {
		before := heapInUse()
		m := New[int]()
		for k := range uint64(n) {
			m.Store(k*4, v)
		}
		per := float64(heapInUse()-before) / float64(n)
		runtime.KeepAlive(m)
		lo, hi = min(lo, per), max(hi, per)
		t.Logf("%8d entries: %5.1f B/entry", n, per)
		// 16 B slots at a load factor between 3/8 and 3/4 give 21-43 B;
		// allow for shards filling unevenly.
		if per < 16 || per > 64 {
			t.Errorf("%d entries: %.1f B/entry, want 16..64", n, per)
		}
	}
	t.Logf("range: %.1f - %.1f B/entry", lo, hi)

	// A burst of 100k entries drained to 1k must give its memory back.
	burst, keep := 100_000, 1_000
	if testing.Short() {
		burst = 20_000
	}
	before := heapInUse()
	m := New[int]()
	for k := range uint64(burst) {
		m.Store(k*4, v)
	}
	for k := range uint64(burst - keep) {
		m.Delete(k * 4)
	}
	per := float64(heapInUse()-before) / float64(keep)
	runtime.KeepAlive(m)
	t.Logf("%d entries left after a burst of %d: %.1f B/entry", keep, burst, per)
	// After shrinking, live >= 1/8 of each table: at most 128 B per entry,
	// plus the fixed cost of the map.
	if per > 160 {
		t.Errorf("after draining a burst: %.1f B per remaining entry, want <= 160", per)
	}
}
