package shardmap

import (
	"sync/atomic"
	"testing"
	"unsafe"
)

// The documented memory figures and the read/write separation rely on these
// sizes. The map is not padded anywhere; these tests pin what it does rely
// on.
func TestLayout(t *testing.T) {
	// 16 B per slot is the basis of the bytes-per-entry figures.
	if s, a := unsafe.Sizeof(slot[int]{}), unsafe.Alignof(slot[int]{}); s != 16 || a != 8 {
		t.Errorf("slot: size %d align %d, want 16 and 8", s, a)
	}
	if s := unsafe.Sizeof(slot[[64]byte]{}); s != 16 {
		t.Errorf("slot size depends on V: %d", s)
	}
	// Eight table pointers, the default, fill exactly one 64-byte line.
	if s := unsafe.Sizeof(atomic.Pointer[table[int]]{}); s != 8 {
		t.Errorf("table pointer: size %d, want 8", s)
	}
	// Writer state is 24 B per shard; the empty-map figure counts on it.
	if s := unsafe.Sizeof(shardWriter{}); s != 24 {
		t.Errorf("shardWriter: size %d, want 24", s)
	}
}

// TestReadWriteSeparation checks that, for any shard count, no cache line
// holds both table pointers (read by every Load) and writer state (written
// by every write).
func TestReadWriteSeparation(t *testing.T) {
	const line = 64
	for shards := 1; shards <= 1024; shards *= 2 {
		m := New[int](WithShards(shards))
		r0 := uintptr(unsafe.Pointer(&m.tables[0]))
		r1 := r0 + uintptr(len(m.tables))*unsafe.Sizeof(m.tables[0])
		w0 := uintptr(unsafe.Pointer(&m.writers[0]))
		w1 := w0 + uintptr(len(m.writers))*unsafe.Sizeof(m.writers[0])
		// Lines [r0/line, (r1-1)/line] and [w0/line, (w1-1)/line] must not meet.
		if r0/line <= (w1-1)/line && w0/line <= (r1-1)/line {
			t.Errorf("%d shards: table pointers [%#x,%#x) and writer state [%#x,%#x) share a cache line",
				shards, r0, r1, w0, w1)
		}
	}
}
