package shardmap

import (
	"sync"
	"testing"
	"time"
)

// Load must not allocate: it is on the per-datagram path.
func TestLoadDoesNotAllocate(t *testing.T) {
	v := ptr(1)
	empty := New[int]()
	m := New[int]()
	for k := range uint64(1000) {
		m.Store(k*4, v)
	}
	m.Delete(40) // a tombstone
	for name, f := range map[string]func(){
		"hit":             func() { mustBe(m.Load(400), v) },
		"miss":            func() { mustBe(m.Load(401), nil) },
		"tombstone":       func() { mustBe(m.Load(40), nil) },
		"empty map":       func() { mustBe(empty.Load(400), nil) },
		"reserved key":    func() { mustBe(m.Load(ReservedKey), nil) },
		"LoadOrStore hit": func() { m.LoadOrStore(400, v) },
		"Delete miss":     func() { m.Delete(401) },
		"Len":             func() { m.Len() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func mustBe(got, want *int) {
	if got != want {
		panic("wrong Load result")
	}
}

// TestLoadDuringResize stops a writer in the middle of rebuilding a big
// shard (new table built, not yet published, shard mutex held) and checks
// that Loads on that shard still return, return the right values, and do
// not allocate. If Load took the shard's mutex, or waited for the rebuild,
// it would hang here, and the test fails after a timeout instead.
func TestLoadDuringResize(t *testing.T) {
	m := New[uint64](WithShards(1))
	// 1<<14 slots in short mode, 1<<16 otherwise; fill it to the brim so
	// that the next insert must rebuild.
	slots := 1 << 16
	if testing.Short() {
		slots = 1 << 14
	}
	vals := make([]uint64, slots)
	n := 0
	for ; ; n++ {
		if t0 := m.tables[0].Load(); t0 != nil && len(t0.slots) == slots && m.writers[0].used == slots*3/4 {
			break
		}
		vals[n] = uint64(n)
		m.Store(uint64(n)*4, &vals[n])
	}
	old := m.tables[0].Load()

	paused, release, stored := make(chan struct{}), make(chan struct{}), make(chan struct{})
	testHookBeforePublish = func() {
		close(paused)
		<-release
	}
	defer func() { testHookBeforePublish = nil }()
	trigger := uint64(n) * 4
	go func() {
		m.Store(trigger, ptr(trigger))
		close(stored)
	}()
	<-paused
	var once sync.Once
	resume := func() { once.Do(func() { close(release); <-stored }) }
	defer resume()

	if m.writers[0].mu.TryLock() {
		t.Fatal("the paused writer does not hold the shard mutex; this test would prove nothing")
	}
	if m.tables[0].Load() != old {
		t.Fatal("the new table was published before the hook ran")
	}

	done := make(chan float64)
	go func() {
		done <- testing.AllocsPerRun(3, func() {
			for i := range n {
				if m.Load(uint64(i)*4) != &vals[i] {
					panic("wrong value during resize")
				}
			}
			if m.Load(trigger) != nil || m.Load(1) != nil {
				panic("key present before its Store is published")
			}
		})
	}()
	select {
	case allocs := <-done:
		if allocs != 0 {
			t.Errorf("Load allocated during a resize: %v allocs per %d Loads", allocs, n+2)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Loads blocked while a writer was mid-resize")
	}
	// Range must not block either.
	go func() {
		c := 0
		m.Range(func(uint64, *uint64) bool { c++; return true })
		done <- float64(c)
	}()
	select {
	case c := <-done:
		if int(c) != n {
			t.Errorf("Range during resize saw %v entries, want %d", c, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Range blocked while a writer was mid-resize")
	}

	resume()
	if nt := m.tables[0].Load(); nt == old || len(nt.slots) != 2*slots {
		t.Fatalf("after the resize: new table %v, %d slots", nt != old, len(nt.slots))
	}
	if v := m.Load(trigger); v == nil || *v != trigger {
		t.Fatal("the triggering Store was lost")
	}
}
