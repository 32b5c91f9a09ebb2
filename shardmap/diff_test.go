package shardmap

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// diffVal is the value type of the differential tests. It carries its key,
// so a reader can tell a value that belongs to another key, and a
// generation that grows with every write to the map, so a reader can tell a
// value older than one it has already seen.
type diffVal struct {
	key uint64
	gen uint64
}

// testHashes are the hashes every differential test runs with.
var testHashes = []struct {
	name   string
	hash   func(uint64) uint64 // nil: the default
	keys   int                 // live keys to aim for at the peak
	shards int
}{
	{"default", nil, 6000, 8},
	// Everything in one shard, at one home slot: every table is a list.
	{"zero", func(uint64) uint64 { return 0 }, 250, 8},
	// Good high bits (shards spread), but the low 24 bits are zero: within
	// a shard every key shares one home slot.
	{"lowbits", func(k uint64) uint64 { return mix64(k) &^ (1<<24 - 1) }, 600, 8},
	// The identity: stream IDs are multiples of 4, so three home slots in
	// four are never used and the shard (the top bits) is always 0 for
	// small keys.
	{"identity", func(k uint64) uint64 { return k }, 1500, 4},
}

func TestDifferential(t *testing.T) {
	for _, h := range testHashes {
		t.Run(h.name, func(t *testing.T) {
			keys, ops := h.keys, 60*h.keys
			if testing.Short() {
				keys, ops = keys/4, ops/8
			}
			runDifferential(t, New[diffVal](WithShards(h.shards), WithHash(h.hash)), keys, ops)
		})
	}
}

// resizeCounts classifies the table replacements a test observed.
type resizeCounts struct{ alloc, grow, same, shrink int }

func (c resizeCounts) String() string {
	return fmt.Sprintf("alloc=%d grow=%d same=%d shrink=%d", c.alloc, c.grow, c.same, c.shrink)
}

// observe records how shard si's table changed between two snapshots.
func (c *resizeCounts) observe(before, after *table[diffVal]) {
	switch {
	case before == after:
	case before == nil:
		c.alloc++
	case len(after.slots) > len(before.slots):
		c.grow++
	case len(after.slots) < len(before.slots):
		c.shrink++
	default:
		c.same++
	}
}

// runDifferential drives m with one writer doing random operations, checked
// against a reference map, while readers Load and Range concurrently and
// check that every value they see is plausible: it belongs to the key they
// asked for, and it is not older than a value they saw before for that key
// (a linearizable map never goes back in time for a single reader).
//
// The writer cycles through three phases, aiming for about peak live keys:
// fill (mostly inserts, so tables grow), churn (insert fresh keys, delete
// old ones, so tombstones pile up and force same-size rebuilds) and drain
// (mostly deletes, so tables shrink).
func runDifferential(t *testing.T, m *Map[diffVal], peak, ops int) {
	ref := map[uint64]*diffVal{}
	var live []uint64 // keys of ref, for picking a random live key
	pos := map[uint64]int{}
	addLive := func(k uint64) { pos[k] = len(live); live = append(live, k) }
	dropLive := func(k uint64) {
		i := pos[k]
		last := live[len(live)-1]
		live[i], pos[last] = last, i
		live = live[:len(live)-1]
		delete(pos, k)
	}

	// Keys are stream-ID-like: multiples of 4, with the top two bits varied
	// so that the identity hash uses more than one shard.
	keyOf := func(i uint64) uint64 { return i*4 | (i%4)<<62 }
	var nextKey uint64 // keys below nextKey have been handed out
	var gen uint64
	newVal := func(k uint64) *diffVal { gen++; return &diffVal{key: k, gen: gen} }

	// Pinned keys are stored before the readers start and never deleted
	// (deletes of them turn into CompareAndSwaps), so a reader must find
	// every one of them every time, whatever rebuilds are going on.
	const pinned = 8
	isPinned := func(k uint64) bool { return (k&^(3<<62))/4 < pinned }
	for range pinned {
		k := keyOf(nextKey)
		nextKey++
		v := newVal(k)
		m.Store(k, v)
		ref[k] = v
		addLive(k)
	}

	// Readers only touch keys below maxKey, published after each op.
	var maxKey atomic.Uint64
	maxKey.Store(nextKey)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readerLoads atomic.Int64
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			seen := map[uint64]uint64{} // key -> newest gen seen
			for n := 0; ; n++ {
				select {
				case <-stop:
					readerLoads.Add(int64(n))
					return
				default:
				}
				if n%1000 == 999 {
					checkRangeConcurrent(t, m)
					continue
				}
				hi := maxKey.Load()
				if hi == 0 {
					continue
				}
				i := rng.Uint64N(hi)
				if n%2 == 0 {
					i %= pinned
				}
				k := keyOf(i)
				v := m.Load(k)
				if v == nil {
					if i < pinned {
						t.Errorf("Load(%#x) of a pinned key returned nil", k)
						return
					}
					continue
				}
				if v.key != k {
					t.Errorf("Load(%#x) returned the value of key %#x", k, v.key)
					return
				}
				if v.gen < seen[k] {
					t.Errorf("Load(%#x) went back in time: gen %d after gen %d", k, v.gen, seen[k])
					return
				}
				seen[k] = v.gen
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		t.Logf("readers: %d loads", readerLoads.Load())
	}()

	rng := rand.New(rand.NewPCG(42, uint64(peak)))
	var resizes resizeCounts
	maxLive := 0
	pickLive := func() uint64 { return live[rng.IntN(len(live))] }
	// pickAny returns a live key, an old (probably deleted) key or a new one.
	pickAny := func() uint64 {
		switch r := rng.IntN(10); {
		case r < 4 && len(live) > 0:
			return pickLive()
		case r < 7 && nextKey > 0:
			return keyOf(rng.Uint64N(nextKey))
		default:
			nextKey++
			return keyOf(nextKey - 1)
		}
	}

	phaseLen := max(ops/12, 1)
	for op := range ops {
		var pInsert int // percent of ops that insert
		switch phase := (op / phaseLen) % 3; {
		case phase == 0 && len(live) < peak:
			pInsert = 80
		case phase == 2 && len(live) > 0:
			pInsert = 15
		default:
			pInsert = 50 // churn, with mostly fresh keys
		}

		var k uint64
		insert := rng.IntN(100) < pInsert || len(live) == 0
		if insert {
			k = pickAny()
		} else {
			k = pickLive()
		}
		si := m.hashKey(k) >> m.shift
		before := m.tables[si].Load()

		cur := ref[k]
		r := rng.IntN(100)
		if isPinned(k) && !insert && r >= 20 {
			r = 10 // A pinned key: CompareAndSwap instead of deleting it.
		}
		switch {
		case insert && r < 50: // Store
			v := newVal(k)
			m.Store(k, v)
			if cur == nil {
				addLive(k)
			}
			ref[k] = v
		case insert: // LoadOrStore
			v := newVal(k)
			act, loaded := m.LoadOrStore(k, v)
			if cur != nil {
				if act != cur || !loaded {
					t.Fatalf("op %d: LoadOrStore(%#x) = %p, %v; want %p, true", op, k, act, loaded, cur)
				}
			} else {
				if act != v || loaded {
					t.Fatalf("op %d: LoadOrStore(%#x) = %p, %v; want %p, false", op, k, act, loaded, v)
				}
				addLive(k)
				ref[k] = v
			}
		case r < 20: // CompareAndSwap, right or wrong old
			old := cur
			if rng.IntN(4) == 0 {
				old = newVal(k)
			}
			v := newVal(k)
			want := old == cur && cur != nil
			if got := m.CompareAndSwap(k, old, v); got != want {
				t.Fatalf("op %d: CompareAndSwap(%#x) = %v, want %v", op, k, got, want)
			}
			if want {
				ref[k] = v
			}
		case r < 40: // CompareAndDelete, right or wrong old
			old := cur
			if rng.IntN(4) == 0 {
				old = newVal(k)
			}
			want := old == cur && cur != nil
			if got := m.CompareAndDelete(k, old); got != want {
				t.Fatalf("op %d: CompareAndDelete(%#x) = %v, want %v", op, k, got, want)
			}
			if want {
				dropLive(k)
				delete(ref, k)
			}
		default: // Delete
			if got := m.Delete(k); got != cur {
				t.Fatalf("op %d: Delete(%#x) = %p, want %p", op, k, got, cur)
			}
			if cur != nil {
				dropLive(k)
				delete(ref, k)
			}
		}
		maxKey.Store(nextKey)
		maxLive = max(maxLive, len(live))

		resizes.observe(before, m.tables[si].Load())
		if got := m.Load(k); got != ref[k] {
			t.Fatalf("op %d: Load(%#x) = %p after the op, want %p", op, k, got, ref[k])
		}
		if op%(ops/20+1) == 0 {
			checkEqual(t, m, ref)
		}
		if t.Failed() {
			return
		}
	}
	checkEqual(t, m, ref)
	t.Logf("%d ops, %d keys used, %d live at peak, %d at end; tables: %v", ops, nextKey, maxLive, len(live), resizes)
	// The schedule must actually have exercised every kind of rebuild.
	if resizes.grow < 3 || resizes.same < 3 || resizes.shrink < 3 {
		t.Errorf("too few rebuilds to mean anything: %v", resizes)
	}
}

// checkEqual checks m against ref with no writer running.
func checkEqual[V any](t *testing.T, m *Map[V], ref map[uint64]*V) {
	t.Helper()
	if m.Len() != len(ref) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(ref))
	}
	for k, v := range ref {
		if got := m.Load(k); got != v {
			t.Fatalf("Load(%#x) = %p, want %p", k, got, v)
		}
	}
	n := 0
	m.Range(func(k uint64, v *V) bool {
		if ref[k] != v {
			t.Fatalf("Range gave %#x -> %p, want %p", k, v, ref[k])
		}
		n++
		return true
	})
	if n != len(ref) {
		t.Fatalf("Range visited %d entries, want %d", n, len(ref))
	}
}

// checkRangeConcurrent checks what Range promises while writers run: each
// key at most once, with a value that belongs to it.
func checkRangeConcurrent(t *testing.T, m *Map[diffVal]) {
	seen := map[uint64]bool{}
	m.Range(func(k uint64, v *diffVal) bool {
		if v.key != k {
			t.Errorf("Range gave key %#x the value of key %#x", k, v.key)
			return false
		}
		if seen[k] {
			t.Errorf("Range visited key %#x twice", k)
			return false
		}
		seen[k] = true
		return true
	})
}
