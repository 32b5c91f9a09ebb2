package shardmap

import (
	"testing"
)

func TestBasicOps(t *testing.T) {
	m := New[string]()
	a, b, c := ptr("a"), ptr("b"), ptr("c")

	if m.Load(4) != nil || m.Len() != 0 {
		t.Fatal("new map not empty")
	}
	m.Store(4, a)
	if got := m.Load(4); got != a {
		t.Fatalf("Load(4) = %v, want a", got)
	}
	if m.Load(8) != nil {
		t.Fatal("Load of absent key not nil")
	}
	m.Store(4, b)
	if got := m.Load(4); got != b || m.Len() != 1 {
		t.Fatalf("after overwrite Load = %v, Len = %d", got, m.Len())
	}

	if act, loaded := m.LoadOrStore(4, c); act != b || !loaded {
		t.Fatalf("LoadOrStore present = %v, %v", act, loaded)
	}
	if act, loaded := m.LoadOrStore(8, c); act != c || loaded {
		t.Fatalf("LoadOrStore absent = %v, %v", act, loaded)
	}

	if m.CompareAndSwap(4, a, c) {
		t.Fatal("CompareAndSwap with wrong old succeeded")
	}
	if m.CompareAndSwap(12, nil, c) {
		t.Fatal("CompareAndSwap on absent key succeeded")
	}
	if !m.CompareAndSwap(4, b, a) || m.Load(4) != a {
		t.Fatal("CompareAndSwap with right old failed")
	}

	if m.CompareAndDelete(4, b) || m.CompareAndDelete(4, nil) {
		t.Fatal("CompareAndDelete with wrong old succeeded")
	}
	if !m.CompareAndDelete(4, a) || m.Load(4) != nil || m.Len() != 1 {
		t.Fatal("CompareAndDelete with right old failed")
	}
	if m.CompareAndDelete(4, a) {
		t.Fatal("CompareAndDelete on deleted key succeeded")
	}

	if old := m.Delete(8); old != c {
		t.Fatalf("Delete(8) = %v, want c", old)
	}
	if old := m.Delete(8); old != nil {
		t.Fatalf("second Delete(8) = %v, want nil", old)
	}
	if m.Len() != 0 {
		t.Fatalf("Len = %d after deleting everything", m.Len())
	}

	// Re-inserting a deleted key reuses its tombstone.
	m.Store(8, a)
	if m.Load(8) != a || m.Len() != 1 {
		t.Fatal("re-insert after delete failed")
	}
	if act, loaded := m.LoadOrStore(4, b); act != b || loaded {
		t.Fatal("LoadOrStore into a tombstone failed")
	}
}

func TestZeroKeyAndLargeKeys(t *testing.T) {
	m := New[int]()
	keys := []uint64{0, 1, 2, 3, 1 << 62, 1<<63 + 5, ReservedKey - 1}
	for i, k := range keys {
		m.Store(k, ptr(i))
	}
	for i, k := range keys {
		if v := m.Load(k); v == nil || *v != i {
			t.Fatalf("Load(%#x) = %v, want %d", k, v, i)
		}
	}
	if m.Load(ReservedKey) != nil {
		t.Fatal("Load(ReservedKey) != nil")
	}
	if m.Delete(ReservedKey) != nil || m.CompareAndDelete(ReservedKey, ptr(0)) ||
		m.CompareAndSwap(ReservedKey, ptr(0), ptr(1)) {
		t.Fatal("ReservedKey reported present")
	}
}

func TestPanics(t *testing.T) {
	m := New[int]()
	v := ptr(1)
	for name, f := range map[string]func(){
		"Store nil":            func() { m.Store(4, nil) },
		"Store reserved":       func() { m.Store(ReservedKey, v) },
		"LoadOrStore nil":      func() { m.LoadOrStore(4, nil) },
		"LoadOrStore reserved": func() { m.LoadOrStore(ReservedKey, v) },
		"CompareAndSwap nil":   func() { m.CompareAndSwap(4, v, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
	if m.Len() != 0 {
		t.Fatal("a panicking call changed the map")
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{-3, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 4}, {8, 8}, {9, 16}, {1 << 20, 1 << 16},
	} {
		m := New[int](WithShards(tc.in))
		if got := len(m.tables); got != tc.want || len(m.writers) != tc.want {
			t.Errorf("WithShards(%d): %d shards, want %d", tc.in, got, tc.want)
		}
		// The shard index must cover exactly [0, shards).
		if got := ^uint64(0) >> m.shift; got != uint64(tc.want-1) {
			t.Errorf("WithShards(%d): max shard index %d", tc.in, got)
		}
	}
	if got := len(New[int]().tables); got != defaultShards {
		t.Errorf("default shards = %d", got)
	}

	m := New[int](WithCapacity(10_000))
	if m.minSlots < 2*10_000/defaultShards {
		t.Errorf("WithCapacity(10000): minSlots = %d", m.minSlots)
	}
	for k := range uint64(10_000) {
		m.Store(k*4, ptr(int(k)))
	}
	for si := range m.tables {
		if n := len(m.tables[si].Load().slots); n != m.minSlots {
			t.Errorf("shard %d grew to %d slots despite WithCapacity (min %d)", si, n, m.minSlots)
		}
	}
	for k := range uint64(10_000) {
		m.Delete(k * 4)
	}
	for si := range m.tables {
		if n := len(m.tables[si].Load().slots); n < m.minSlots {
			t.Errorf("shard %d shrank to %d slots, below WithCapacity's %d", si, n, m.minSlots)
		}
	}

	calls := 0
	m2 := New[int](WithHash(func(k uint64) uint64 { calls++; return k }))
	m2.Store(4, ptr(1))
	if calls == 0 || m2.Load(4) == nil {
		t.Error("WithHash not used")
	}
	if New[int](WithHash(nil)).hash != nil {
		t.Error("WithHash(nil) did not restore the default")
	}
}

func TestLazyTables(t *testing.T) {
	m := New[int]()
	m.Load(4)
	m.Delete(4)
	m.CompareAndDelete(4, ptr(1))
	m.CompareAndSwap(4, ptr(1), ptr(2))
	m.Range(func(uint64, *int) bool { t.Fatal("Range on empty map called f"); return false })
	for si := range m.tables {
		if m.tables[si].Load() != nil {
			t.Fatalf("shard %d allocated a table without a store", si)
		}
	}
	m.Store(4, ptr(1))
	n := 0
	for si := range m.tables {
		if m.tables[si].Load() != nil {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one Store allocated %d tables", n)
	}
}

func TestRange(t *testing.T) {
	m := New[uint64]()
	const n = 1000
	for k := range uint64(n) {
		m.Store(k*4, ptr(k*4))
	}
	for k := uint64(0); k < n; k += 2 {
		m.Delete(k * 4)
	}
	seen := map[uint64]bool{}
	m.Range(func(k uint64, v *uint64) bool {
		if *v != k || seen[k] || k%8 == 0 {
			t.Fatalf("Range gave %d -> %d (seen %v)", k, *v, seen[k])
		}
		seen[k] = true
		return true
	})
	if len(seen) != n/2 || m.Len() != n/2 {
		t.Fatalf("Range saw %d keys, Len %d, want %d", len(seen), m.Len(), n/2)
	}

	calls := 0
	m.Range(func(uint64, *uint64) bool { calls++; return calls < 3 })
	if calls != 3 {
		t.Fatalf("Range kept going after f returned false: %d calls", calls)
	}

	// f may write to the map, including the key it is visiting.
	m.Range(func(k uint64, v *uint64) bool {
		m.Delete(k)
		m.Store(k+1, v)
		return true
	})
	if m.Len() > n {
		t.Fatalf("Len = %d after rewriting in Range", m.Len())
	}
}

func TestResizeSequence(t *testing.T) {
	// One shard, so table sizes are predictable.
	m := New[uint64](WithShards(1))
	sizeOf := func() int { return len(m.tables[0].Load().slots) }
	for k := range uint64(6) {
		m.Store(k*4, ptr(k))
	}
	if sizeOf() != 8 {
		t.Fatalf("6 entries: %d slots, want 8", sizeOf())
	}
	m.Store(24, ptr(uint64(6))) // used 7 > 6 = 3/4 of 8: grow.
	if sizeOf() != 16 {
		t.Fatalf("7 entries: %d slots, want 16", sizeOf())
	}
	for k := range uint64(1000) {
		m.Store(k*4, ptr(k))
	}
	if s := sizeOf(); s != 2048 {
		t.Fatalf("1000 entries: %d slots, want 2048", s)
	}

	// Churn at constant size: tombstones force same-size rebuilds.
	before := m.tables[0].Load()
	for k := uint64(1000); k < 3000; k++ {
		m.Delete((k - 1000) * 4)
		m.Store(k*4, ptr(k))
	}
	if after := m.tables[0].Load(); after == before || len(after.slots) != 2048 {
		t.Fatalf("churn: table replaced %v, %d slots; want a same-size rebuild", after != before, len(after.slots))
	}

	// Drain: the table shrinks back as entries go.
	for k := uint64(2000); k < 2990; k++ {
		m.Delete(k * 4)
	}
	if s := sizeOf(); s > 64 {
		t.Fatalf("10 entries left: %d slots, want the table to have shrunk", s)
	}
	for k := uint64(2990); k < 3000; k++ {
		if v := m.Load(k * 4); v == nil || *v != k {
			t.Fatalf("Load(%d) = %v after shrinking", k*4, v)
		}
	}
	if m.Len() != 10 {
		t.Fatalf("Len = %d, want 10", m.Len())
	}
}

func ptr[T any](v T) *T { return &v }
