package shardmap

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// Writes are safe from many goroutines. These tests run several writers at
// once, on disjoint and on shared keys, with readers alongside, and check
// that the final state is exactly what the writers did.

// TestConcurrentWritersDisjoint gives each writer its own keys and its own
// reference map; at the end the map must equal the union of the references.
// With one shard, or with the zero hash, all writers contend for one mutex
// and rebuild one table under each other's feet.
func TestConcurrentWritersDisjoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []Option
		keys   int // per writer
		rounds int
	}{
		{"default", nil, 3000, 40_000},
		{"one-shard", []Option{WithShards(1)}, 3000, 40_000},
		{"zero-hash", []Option{WithHash(func(uint64) uint64 { return 0 })}, 100, 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, rounds := tc.keys, tc.rounds
			if testing.Short() {
				keys, rounds = keys/4, rounds/8
			}
			const writers = 4
			m := New[diffVal](tc.opts...)
			refs := make([]map[uint64]*diffVal, writers)
			stopReaders := startCheckingReaders(t, m, 2, uint64(writers*keys))

			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					refs[w] = randomWrites(t, m, w, writers, keys, rounds)
				}()
			}
			wg.Wait()
			stopReaders()

			union := map[uint64]*diffVal{}
			for _, ref := range refs {
				for k, v := range ref {
					union[k] = v
				}
			}
			checkEqual(t, m, union)
		})
	}
}

// randomWrites does rounds random writes on writer w's keys (key index i
// with i%writers == w) and returns what the map should hold for them.
func randomWrites(t *testing.T, m *Map[diffVal], w, writers, keys, rounds int) map[uint64]*diffVal {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	ref := map[uint64]*diffVal{}
	gen := uint64(0)
	for range rounds {
		k := diffKey(uint64(rng.IntN(keys)*writers + w))
		gen++
		v := &diffVal{key: k, gen: gen}
		cur := ref[k]
		switch rng.IntN(5) {
		case 0:
			m.Store(k, v)
			ref[k] = v
		case 1:
			if act, loaded := m.LoadOrStore(k, v); act != cmp(cur, v) || loaded != (cur != nil) {
				t.Errorf("writer %d: LoadOrStore(%#x) = %p, %v; had %p", w, k, act, loaded, cur)
				return ref
			}
			ref[k] = cmp(cur, v)
		case 2:
			if ok := m.CompareAndSwap(k, cur, v); ok != (cur != nil) {
				t.Errorf("writer %d: CompareAndSwap(%#x) = %v; had %p", w, k, ok, cur)
				return ref
			}
			if cur != nil {
				ref[k] = v
			}
		case 3:
			if ok := m.CompareAndDelete(k, cur); ok != (cur != nil) {
				t.Errorf("writer %d: CompareAndDelete(%#x) = %v; had %p", w, k, ok, cur)
				return ref
			}
			delete(ref, k)
		default:
			if old := m.Delete(k); old != cur {
				t.Errorf("writer %d: Delete(%#x) = %p; had %p", w, k, old, cur)
				return ref
			}
			delete(ref, k)
		}
	}
	return ref
}

// cmp returns cur if it is non-nil, else v: what LoadOrStore should return.
func cmp(cur, v *diffVal) *diffVal {
	if cur != nil {
		return cur
	}
	return v
}

// diffKey turns a key index into a stream-ID-like key.
func diffKey(i uint64) uint64 { return i * 4 }

// TestConcurrentWritersShared has writers race on the same keys with the
// read-modify-write operations, whose outcome is checkable although the
// interleaving is not: exactly one LoadOrStore per key inserts, CAS
// increments are never lost, exactly one Delete per key gets the value.
// Meanwhile a churn writer on other keys keeps rebuilding the tables.
func TestConcurrentWritersShared(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		keys int
	}{
		{"default", nil, 2000},
		{"one-shard", []Option{WithShards(1)}, 2000},
		{"zero-hash", []Option{WithHash(func(uint64) uint64 { return 0 })}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const writers = 4
			keys, incs := tc.keys, 5
			if testing.Short() {
				keys = keys / 4
			}
			m := New[diffVal](tc.opts...)
			// Shared keys are diffKey(0 .. keys-1); the churn writer uses
			// keys from diffKey(keys) up.
			stopChurn := startChurn(m, uint64(keys), tc.keys/2)
			defer stopChurn()
			// Values of a shared key only move forward: gen 0 from the
			// LoadOrStore, then one increment per CAS, then nil.
			stopReaders := startCheckingReaders(t, m, 2, uint64(keys))
			defer stopReaders()

			phase := func(f func(w int, k uint64)) {
				var wg sync.WaitGroup
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						// Each writer walks the keys from its own offset.
						for i := range keys {
							f(w, diffKey(uint64((i+w*keys/writers)%keys)))
						}
					}()
				}
				wg.Wait()
			}

			// 1. Everyone LoadOrStores every key: one winner per key.
			var inserted [writers]atomic.Int64
			phase(func(w int, k uint64) {
				v := &diffVal{key: k}
				act, loaded := m.LoadOrStore(k, v)
				if loaded == (act == v) || act.key != k {
					t.Errorf("LoadOrStore(%#x) = %p, %v with v = %p", k, act, loaded, v)
				}
				if !loaded {
					inserted[w].Add(1)
				}
			})
			total := int64(0)
			for w := range inserted {
				total += inserted[w].Load()
			}
			if total != int64(keys) {
				t.Fatalf("%d LoadOrStores inserted, want %d (one per key)", total, keys)
			}

			// 2. Everyone CAS-increments every key incs times.
			phase(func(w int, k uint64) {
				for range incs {
					for {
						old := m.Load(k)
						if m.CompareAndSwap(k, old, &diffVal{key: k, gen: old.gen + 1}) {
							break
						}
					}
				}
			})
			for i := range keys {
				k := diffKey(uint64(i))
				if v := m.Load(k); v == nil || v.gen != writers*uint64(incs) {
					t.Fatalf("key %#x: %v after %d CAS increments", k, v, writers*incs)
				}
			}

			// 3. Everyone Deletes every key: exactly one gets the value.
			var got atomic.Int64
			phase(func(w int, k uint64) {
				if old := m.Delete(k); old != nil {
					if old.gen != writers*uint64(incs) {
						t.Errorf("Delete(%#x) got gen %d", k, old.gen)
					}
					got.Add(1)
				}
			})
			if got.Load() != int64(keys) {
				t.Fatalf("%d Deletes got a value, want %d", got.Load(), keys)
			}
			for i := range keys {
				if v := m.Load(diffKey(uint64(i))); v != nil {
					t.Fatalf("key %d still present after Delete", i)
				}
			}
		})
	}
}

// startChurn starts a writer that inserts fresh keys from diffKey(from) up
// and deletes old ones, keeping about live of them, so that tables are
// grown, rebuilt and shrunk while other goroutines work. stop waits for it.
func startChurn(m *Map[diffVal], from uint64, live int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		next := from
		for {
			select {
			case <-done:
				for k := from; k < next; k++ {
					m.Delete(diffKey(k))
				}
				return
			default:
			}
			m.Store(diffKey(next), &diffVal{key: diffKey(next)})
			if next-from >= uint64(live) {
				m.Delete(diffKey(next - uint64(live)))
			}
			next++
			// Every so often drain most of the window so tables shrink.
			if next%uint64(8*live+1) == 0 {
				for k := next - uint64(live); k < next-uint64(live/16); k++ {
					m.Delete(diffKey(k))
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// startCheckingReaders starts n goroutines that Load random keys below
// diffKey(keys) and check each value belongs to its key and never goes back
// in time per reader. stop waits for them.
func startCheckingReaders(t *testing.T, m *Map[diffVal], n int, keys uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 99))
			seen := map[uint64]uint64{}
			for {
				select {
				case <-done:
					return
				default:
				}
				k := diffKey(rng.Uint64N(keys))
				v := m.Load(k)
				if v == nil {
					continue
				}
				if v.key != k {
					t.Errorf("Load(%#x) returned the value of key %#x", k, v.key)
					return
				}
				// Per-writer generations grow for each key, and each key
				// has one writer here.
				if v.gen < seen[k] {
					t.Errorf("Load(%#x) went back in time: gen %d after %d", k, v.gen, seen[k])
					return
				}
				seen[k] = v.gen
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
