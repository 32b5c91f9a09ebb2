package shardmap

import (
	"sync"
	"sync/atomic"
)

// Design
//
// A Map is a power-of-two number of shards. A key's 64-bit hash h picks the
// shard from its high bits (h >> shift) and the home slot in that shard's
// table from its low bits (h & (len(slots)-1)).
//
// Read-hot and write-hot state live in two separate arrays:
//
//	tables  []atomic.Pointer[table[V]] // read side: one pointer per shard
//	writers []shardWriter              // write side: mutex + counts
//
// A Load touches tables[s], the table it points to and the slots it probes,
// never writers[s]; so a writer taking a shard's mutex or updating its
// counts does not invalidate the cache line of table pointers every reader
// shares. The two arrays are separate allocations of different size classes
// (8 B and 24 B per shard) and never share a cache line (layout_test.go).
// tables[s] is written only when shard s gets a new table, which is rare.
// A shard's table is allocated on the shard's first write; an empty map is
// the Map header plus the two arrays.
//
// A table is open addressing with linear probing over 16-byte slots
// {key atomic.Uint64; val atomic.Pointer[V]}. slot.key holds key+1, so the
// zero slot is empty and ReservedKey (^uint64(0)) cannot be stored.
//
// Invariants, for every table t of shard s:
//
//	T1. len(t.slots) is a power of two, at least minTableSlots.
//	T2. A slot's key changes at most once, from empty to K+1: a slot, once
//	    claimed for K, belongs to K for t's whole life. Deleting K stores nil
//	    in val; the slot becomes a tombstone that still belongs to K, and
//	    re-inserting K reuses it. A different key never reuses a tombstone,
//	    and entries never move within t. Tombstones are cleared only by
//	    rehashing into a new table.
//	T3. K has at most one slot in t, and it is the first slot on K's probe
//	    sequence (home, home+1, ... mod len) that was empty when K was
//	    inserted. By T2 every slot before it on that sequence is non-empty
//	    for the rest of t's life, so a probe for K that reaches an empty slot
//	    proves K has no slot in t.
//	T4. used (claimed slots: live entries + tombstones) never exceeds 3/4 of
//	    len(t.slots), so t is never full and every probe ends.
//	T5. Only the current table is written, only by a goroutine holding
//	    writers[s].mu, and only through slot.key and slot.val. A table that
//	    has been replaced (retired) is never written again; readers that
//	    still hold it see it frozen.
//	T6. writers[s].live is the number of slots of the current table with a
//	    non-nil val, writers[s].used the number with a non-empty key.
//
// Slot ownership. The goroutine holding writers[s].mu owns every slot of
// shard s's current table for writing: it may claim an empty slot (val
// first, key last), replace a slot's val, or store nil in it. A table that a
// writer is building is owned by that writer alone until it is published;
// publishing passes write ownership from the old table to the new one and
// leaves the old one read-only forever. Readers own nothing: they may read
// any slot of any table they have loaded, at any time.
//
// Memory ordering. All shared fields are sync/atomic values, which the Go
// memory model makes sequentially consistent. There are three publishing
// stores, each commented where it happens:
//
//   - claim: slot.val, then slot.key ("publish the key last"), so a reader
//     that sees K's key in a slot reads K's value or a later one from it,
//     and the insert takes effect at the key store. (The other order would
//     also be correct, since a claimed slot's nil val reads as absent, but
//     then an insert would take effect at a later store than the one that
//     makes the slot non-empty.)
//   - update/delete: slot.val, alone;
//   - resize: every slot of the new table, then tables[s] ("publish the table
//     last"), so a reader that loads the new table sees all its entries.
//
// For callers this gives: a write that stores v synchronizes before any Load
// (or Range, or LoadOrStore) that returns v, so everything the writer did
// before the write, such as filling in *v, is visible to that reader.
//
// Why Load is linearizable. Load(K) loads t = tables[s], probes from K's
// home slot and either finds an empty slot (absent), or finds K's key and
// returns one atomic read of that slot's val (nil means absent).
//
//   - The key and value it returns belong together: by T2 a slot is never
//     bound to two keys in one table, so reading the key and then the val
//     of a slot cannot pair K's key with another key's value.
//   - While t is current, each slot read returns the slot's state at the
//     moment of the read, and the abstract map agrees with t at every
//     moment (writes happen in t, one atomic store each). The Load
//     linearizes at its last read: the val read, or the read of the empty
//     slot, which by T3 proves K has no slot at that moment. Skipping a
//     slot that holds another key is safe because that slot can never
//     become K's (T2).
//   - If t is retired during the Load, it froze at the moment tables[s] was
//     switched, and by construction the new table then held exactly t's
//     live entries. A read made after the switch returns K's state at the
//     switch, which lies inside the Load's interval (the Load loaded t
//     before the switch and is still running after it); the Load
//     linearizes at the switch.
//
// A key that is present throughout a Load therefore sits at a fixed slot
// whose earlier probe slots are all non-empty, and the Load finds it.
//
// Resizing. A writer about to claim a slot in a table whose used count
// would exceed 3/4 of its length first rebuilds the shard: it makes a new
// table of slotsFor(live+1) slots (the smallest power of two >= max(the
// minimum, 2*live)), copies the live entries into it, and publishes it with
// one store to tables[s]. That one rule covers the three cases: the table
// doubles when it is mostly live, keeps its size when it is mostly
// tombstones, and shrinks when few entries are live. A delete that leaves
// live below 1/8 of the table also rebuilds to slotsFor(live), so a burst of
// entries does not pin memory after it drains. After any rebuild live is
// at most half the table and, above the minimum size, more than a quarter
// of it, so the next rebuild is at least len/8 writes away: writes are
// amortized O(1), with an O(live) pause on the writer that rebuilds. Readers
// never wait for a rebuild; they keep reading whichever table they loaded.
//
// Degenerate hashes. With a hash that sends every key to one home slot, a
// shard degrades to one linear list of up to 3/4·len slots: Load is O(n) but
// stays bounded by len(slots) steps, lock-free and allocation-free; writes
// and rebuilds become O(n) and O(n²).
//
// Alternatives that look simpler and are wrong here:
//
//   - Letting a new key K2 take over a tombstone of K, as single-threaded
//     open addressing does: a reader that has just matched K's key in the
//     slot could then read K2's value and return it for K.
//   - Clearing a deleted slot back to empty: it would cut the probe
//     sequence of every key placed after it, and a Load could miss a
//     present key (T3).
//   - Moving entries within a table (growing in place, backward-shift
//     deletion, Robin Hood): a reader mid-probe could miss an entry while
//     it moves. Entries move only by being copied into a new table that is
//     published whole.
//   - Making Load retry, or wait, when it meets a resize: it never needs
//     to, because a retired table is frozen, not torn.

// Map is a concurrent hash map from uint64 keys to *V values, built for a
// read-mostly router: many goroutines Load, a control-plane goroutine writes.
//
// It is sharded open addressing with linear probing, where a slot stays
// bound to its key for the life of its table (deletes leave tombstones) and
// tables are replaced, never resized in place. Load is wait-free and does
// not allocate. Writes are safe from any number of goroutines: writers of
// one shard serialize on that shard's mutex; readers never take it.
//
// A write that stores v synchronizes before any Load that returns v.
//
// The zero Map is not usable; call New. A Map must not be copied after
// first use.
type Map[V any] struct {
	// Read-only after New.
	tables   []atomic.Pointer[table[V]] // read side, one per shard; nil until the shard's first write
	writers  []shardWriter              // write side, one per shard
	hash     func(uint64) uint64        // nil: mix64
	shift    uint                       // shard = hash >> shift
	minSlots int                        // smallest table a shard may have
}

// shardWriter is the write-side state of one shard. It is deliberately not
// padded to a cache line: the expected writer is a single control-plane
// goroutine, and padding each to 64 B would take an empty map at the
// default shard count from 336 B to 656 B.
type shardWriter struct {
	mu   sync.Mutex   // serializes the shard's writers; readers never take it
	used int          // claimed slots in the current table (T6); guarded by mu
	live atomic.Int64 // live entries (T6); written under mu, read by Len without it
}

// New returns an empty map. No shard table is allocated until the first
// write to that shard.
func New[V any](opts ...Option) *Map[V] {
	c := config{shards: defaultShards}
	if len(opts) > 0 {
		// Options get a pointer; keep that on its own heap object so the
		// common New() does not pay for an escaping config.
		pc := new(config)
		*pc = c
		for _, o := range opts {
			o(pc)
		}
		c = *pc
	}
	n := shardCount(c.shards)
	shift := uint(64)
	for s := n; s > 1; s >>= 1 {
		shift--
	}
	return &Map[V]{
		tables:   make([]atomic.Pointer[table[V]], n),
		writers:  make([]shardWriter, n),
		hash:     c.hash,
		shift:    shift,
		minSlots: minSlotsFor(c.capacity, n),
	}
}

// hashKey returns key's hash; its high bits select the shard.
func (m *Map[V]) hashKey(key uint64) uint64 {
	if m.hash != nil {
		return m.hash(key)
	}
	return mix64(key)
}

// Load returns the value stored for key, or nil if there is none.
//
// Load is wait-free: it takes no lock, never retries and probes at most one
// table's worth of slots. It does not allocate. It may run concurrently with
// any other method.
func (m *Map[V]) Load(key uint64) *V {
	h := m.hashKey(key)
	t := m.tables[h>>m.shift].Load()
	if t == nil {
		return nil
	}
	if s := t.lookup(h, encodeKey(key)); s != nil {
		return s.val.Load() // nil: deleted (a tombstone)
	}
	return nil
}

// Len returns the number of entries. It takes no lock; while writers run it
// is the sum of per-shard counts read at slightly different moments, so it
// is exact only when no write is in progress.
func (m *Map[V]) Len() int {
	n := int64(0)
	for i := range m.writers {
		n += m.writers[i].live.Load()
	}
	return int(n)
}

// Range calls f for each entry until f returns false. It takes no lock and
// does not block writers; f may call any method of m.
//
// Range is weakly consistent, like sync.Map's: it visits each key at most
// once; a key present with an unchanged value for the whole Range is
// visited; a key written or deleted during the Range may or may not be
// visited, and if it is, f sees a value the key held at some moment during
// the Range. The order is unspecified.
func (m *Map[V]) Range(f func(key uint64, v *V) bool) {
	for si := range m.tables {
		// One table per shard: even if it is retired meanwhile, the walk
		// stays in it, and a key has one slot per table (T3).
		t := m.tables[si].Load()
		if t == nil {
			continue
		}
		for i := range t.slots {
			s := &t.slots[i]
			k := s.key.Load()
			if k == emptyKey {
				continue
			}
			if v := s.val.Load(); v != nil && !f(k-1, v) {
				return
			}
		}
	}
}
