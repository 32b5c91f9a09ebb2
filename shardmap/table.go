package shardmap

import "sync/atomic"

// This file holds the open-addressing table that backs one shard. The
// invariants it relies on are listed at the top of map.go (T1-T6).

// emptyKey is the value of slot.key for a slot no key has claimed. Keys are
// stored as key+1 (see encodeKey), so a freshly made table is all empty with
// no initialisation pass.
const emptyKey = 0

// ReservedKey is the one key a Map cannot hold: keys are stored as key+1 so
// that the zero value of a slot means empty, and ReservedKey+1 wraps to
// zero. Store and LoadOrStore panic on it; Load returns nil for it; Delete,
// CompareAndSwap and CompareAndDelete report it absent. HTTP/3 stream IDs
// (at most 2^62-1) never reach it.
const ReservedKey = ^uint64(0)

// encodeKey maps a key to its stored form. ReservedKey encodes to emptyKey,
// which no probe ever matches because probes test for emptyKey first.
func encodeKey(key uint64) uint64 { return key + 1 }

// slot is one cell of a table: 16 bytes (checked in layout_test.go).
type slot[V any] struct {
	// key is emptyKey until a writer claims the slot, then encodeKey(K) for
	// the rest of the table's life (T2). It is written after val.
	key atomic.Uint64
	// val is K's value, or nil once K is deleted (a tombstone that still
	// belongs to K). Written only by the shard's writer (T5).
	val atomic.Pointer[V]
}

// table is one shard's hash table. Its slots slice is fixed at creation;
// only the contents of slots change, and only while the table is current.
type table[V any] struct {
	slots []slot[V] // power-of-two length >= minTableSlots (T1)
}

func newTable[V any](n int) *table[V] {
	return &table[V]{slots: make([]slot[V], n)}
}

// lookup is the read-side probe: it returns the slot bound to enc, or nil
// when enc has no slot in t. It reads only atomics, takes no lock, never
// retries and visits at most len(t.slots) slots, so it is wait-free.
func (t *table[V]) lookup(h, enc uint64) *slot[V] {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for range len(t.slots) {
		s := &t.slots[i]
		k := s.key.Load()
		// Test for empty before testing for a match: ReservedKey encodes to
		// emptyKey and must not match a slot whose val is being written
		// ahead of its key.
		if k == emptyKey {
			return nil // T3: enc has no slot further along either.
		}
		if k == enc {
			return s
		}
		i = (i + 1) & mask
	}
	return nil // Only reachable if the table were full, which T4 forbids.
}

// findLocked is the write-side probe. It returns the index of the slot bound
// to enc (found == true, the slot may be a tombstone) or of the first empty
// slot on enc's probe sequence, which is where enc would be inserted. The
// caller holds the shard's mutex and t is the shard's current table, or a
// table the caller is building and has not published.
func (t *table[V]) findLocked(h, enc uint64) (i uint64, found bool) {
	mask := uint64(len(t.slots) - 1)
	i = h & mask
	for range len(t.slots) {
		switch t.slots[i].key.Load() {
		case enc:
			return i, true
		case emptyKey:
			return i, false
		}
		i = (i + 1) & mask
	}
	panic("shardmap: table full (invariant T4 broken)")
}

// claimLocked binds the empty slot i to enc with value v. The caller holds
// the shard's mutex and got i from findLocked with found == false.
func (t *table[V]) claimLocked(i, enc uint64, v *V) {
	s := &t.slots[i]
	s.val.Store(v)
	s.key.Store(enc) // Publish the key last: a reader that sees it sees v.
}
