package shardmap

// Writes. Every write takes its shard's mutex (functions named fooLocked
// expect it held) and keeps the invariants T1-T6 listed in map.go. A write
// that finds nothing to do after a lock-free Load (Delete of an absent key,
// a CompareAndSwap or CompareAndDelete whose old value does not match,
// LoadOrStore of a present key) returns without locking; it linearizes at
// that Load.

// Store sets the value for key to v. v must not be nil (use Delete) and key
// must not be ReservedKey; Store panics otherwise.
func (m *Map[V]) Store(key uint64, v *V) {
	checkStore(key, v)
	h := m.hashKey(key)
	si := h >> m.shift
	w := &m.writers[si]
	w.mu.Lock()
	if t := m.tables[si].Load(); t != nil {
		if i, found := t.findLocked(h, encodeKey(key)); found {
			if t.slots[i].val.Swap(v) == nil { // Publish v.
				w.live.Add(1) // It was a tombstone.
			}
			w.mu.Unlock()
			return
		}
	}
	m.insertLocked(si, h, key, v)
	w.mu.Unlock()
}

// LoadOrStore returns the value stored for key if there is one (loaded ==
// true); otherwise it stores v and returns it (loaded == false). v must not
// be nil and key must not be ReservedKey; LoadOrStore panics otherwise.
// When key is present it takes no lock.
func (m *Map[V]) LoadOrStore(key uint64, v *V) (actual *V, loaded bool) {
	checkStore(key, v)
	if p := m.Load(key); p != nil {
		return p, true
	}
	h := m.hashKey(key)
	si := h >> m.shift
	w := &m.writers[si]
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := m.tables[si].Load(); t != nil {
		if i, found := t.findLocked(h, encodeKey(key)); found {
			s := &t.slots[i]
			if p := s.val.Load(); p != nil {
				return p, true
			}
			s.val.Store(v) // Publish v into key's own tombstone.
			w.live.Add(1)
			return v, false
		}
	}
	m.insertLocked(si, h, key, v)
	return v, false
}

// Delete removes key and returns the value it had, or nil if it was absent.
// Deleting an absent key takes no lock.
func (m *Map[V]) Delete(key uint64) (old *V) {
	if m.Load(key) == nil {
		return nil // Linearizes at the Load: nothing to write.
	}
	return m.deleteSlow(key, nil)
}

// CompareAndSwap stores new for key if key's current value is old (pointer
// identity) and reports whether it did. An absent key never matches, so a
// nil old always fails; use LoadOrStore to insert. new must not be nil.
func (m *Map[V]) CompareAndSwap(key uint64, old, new *V) bool {
	if new == nil {
		panic("shardmap: CompareAndSwap with nil new value")
	}
	if old == nil || m.Load(key) != old {
		return false // Linearizes at the Load.
	}
	h := m.hashKey(key)
	si := h >> m.shift
	w := &m.writers[si]
	w.mu.Lock()
	defer w.mu.Unlock()
	t := m.tables[si].Load()
	// t != nil: the Load above found key, and a shard's table never goes
	// back to nil.
	i, found := t.findLocked(h, encodeKey(key))
	if !found {
		return false
	}
	s := &t.slots[i]
	if s.val.Load() != old {
		return false
	}
	s.val.Store(new) // Publish new.
	return true
}

// CompareAndDelete deletes key if its current value is old (pointer
// identity) and reports whether it did. A nil old never matches.
func (m *Map[V]) CompareAndDelete(key uint64, old *V) bool {
	if old == nil || m.Load(key) != old {
		return false // Linearizes at the Load.
	}
	return m.deleteSlow(key, old) != nil
}

// deleteSlow deletes key under its shard's mutex if its value is match, or
// if match is nil, any value. It returns the deleted value, or nil.
func (m *Map[V]) deleteSlow(key uint64, match *V) *V {
	h := m.hashKey(key)
	si := h >> m.shift
	w := &m.writers[si]
	w.mu.Lock()
	defer w.mu.Unlock()
	t := m.tables[si].Load()
	if t == nil {
		return nil
	}
	i, found := t.findLocked(h, encodeKey(key))
	if !found {
		return nil
	}
	s := &t.slots[i]
	old := s.val.Load()
	if old == nil || (match != nil && old != match) {
		return nil
	}
	s.val.Store(nil) // Publish the tombstone; the slot stays key's (T2).
	live := int(w.live.Add(-1))
	if n := len(t.slots); n > m.minSlots && live*8 < n {
		m.publishLocked(si, m.rebuildLocked(si, t, live)) // Shrink.
	}
	return old
}

// insertLocked binds a new slot to key, which has no slot (not even a
// tombstone) in shard si's current table. It creates or rebuilds the table
// first when needed. The caller holds writers[si].mu.
func (m *Map[V]) insertLocked(si, h, key uint64, v *V) {
	w := &m.writers[si]
	t := m.tables[si].Load()
	fresh := false
	switch {
	case t == nil:
		t, fresh = newTable[V](m.minSlots), true
	case (w.used+1)*4 > len(t.slots)*3: // T4 would break: rebuild first.
		t, fresh = m.rebuildLocked(si, t, int(w.live.Load())+1), true
	}
	enc := encodeKey(key)
	i, _ := t.findLocked(h, enc)
	t.claimLocked(i, enc, v)
	w.used++
	w.live.Add(1)
	if fresh {
		m.publishLocked(si, t)
	}
}

// rebuildLocked returns a new, unpublished table for shard si holding the
// live entries of t, its current table, sized for want entries. It sets
// writers[si].used to match the new table. The caller holds writers[si].mu
// and must publish the result.
func (m *Map[V]) rebuildLocked(si uint64, t *table[V], want int) *table[V] {
	nt := newTable[V](slotsFor(m.minSlots, want))
	used := 0
	for i := range t.slots {
		s := &t.slots[i]
		k := s.key.Load()
		if k == emptyKey {
			continue
		}
		v := s.val.Load()
		if v == nil {
			continue // Tombstones are dropped here and only here.
		}
		j, _ := nt.findLocked(m.hashKey(k-1), k)
		nt.claimLocked(j, k, v)
		used++
	}
	m.writers[si].used = used
	return nt
}

// testHookBeforePublish, if set, runs after a new table has been built and
// before it is published, with the shard's mutex held. Tests use it to hold
// a writer in the middle of a resize.
var testHookBeforePublish func()

// publishLocked makes t the current table of shard si. The caller holds
// writers[si].mu and has finished writing t.
func (m *Map[V]) publishLocked(si uint64, t *table[V]) {
	if testHookBeforePublish != nil {
		testHookBeforePublish()
	}
	m.tables[si].Store(t) // Publish the table last: all its slots are written.
}

func checkStore[V any](key uint64, v *V) {
	if v == nil {
		panic("shardmap: nil value (use Delete to remove a key)")
	}
	if key == ReservedKey {
		panic("shardmap: key ^uint64(0) is reserved")
	}
}
