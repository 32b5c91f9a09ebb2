package ringbuf

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// hwLine is the false-sharing unit the layout must respect: fields written by
// different parties must be at least this far apart.
const hwLine = 64

type fieldPos struct {
	name  string
	off   uintptr
	size  uintptr
	group string // who writes it
}

func layoutOf[T any]() []fieldPos {
	var r Ring[T]
	prod, cons := unsafe.Offsetof(r.prod), unsafe.Offsetof(r.cons)
	return []fieldPos{
		{"slots", unsafe.Offsetof(r.slots), unsafe.Sizeof(r.slots), "read-mostly"},
		{"mask", unsafe.Offsetof(r.mask), unsafe.Sizeof(r.mask), "read-mostly"},
		{"limit", unsafe.Offsetof(r.limit), unsafe.Sizeof(r.limit), "read-mostly"},
		{"wake", unsafe.Offsetof(r.wake), unsafe.Sizeof(r.wake), "read-mostly"},
		{"waker", unsafe.Offsetof(r.waker), unsafe.Sizeof(r.waker), "read-mostly"},
		{"count", prod + unsafe.Offsetof(r.prod.count), unsafe.Sizeof(r.prod.count), "producers"},
		{"tail", prod + unsafe.Offsetof(r.prod.tail), unsafe.Sizeof(r.prod.tail), "producers"},
		{"dropped", prod + unsafe.Offsetof(r.prod.dropped), unsafe.Sizeof(r.prod.dropped), "producers"},
		{"parked", prod + unsafe.Offsetof(r.prod.parked), unsafe.Sizeof(r.prod.parked), "producers"},
		{"wakeups", prod + unsafe.Offsetof(r.prod.wakeups), unsafe.Sizeof(r.prod.wakeups), "producers"},
		{"head", cons + unsafe.Offsetof(r.cons.head), unsafe.Sizeof(r.cons.head), "consumer"},
	}
}

// TestLayout fails if a change to Ring puts fields written by different
// parties within one cache line of each other, or lets a hot group spill
// over one line.
func TestLayout(t *testing.T) {
	require.Equal(t, uintptr(cacheLinePad), unsafe.Sizeof(producerLine{}))
	require.Equal(t, uintptr(cacheLinePad), unsafe.Sizeof(consumerLine{}))

	check := func(t *testing.T, fields []fieldPos) {
		span := map[string][2]uintptr{} // group -> [first byte, end]
		for _, f := range fields {
			s, ok := span[f.group]
			if !ok {
				s = [2]uintptr{f.off, f.off + f.size}
			}
			span[f.group] = [2]uintptr{min(s[0], f.off), max(s[1], f.off+f.size)}
		}
		for g, s := range span {
			require.LessOrEqual(t, s[1]-s[0], uintptr(hwLine), "group %s spans more than one line", g)
		}
		for _, a := range fields {
			for _, b := range fields {
				if a.group == b.group || a.off > b.off {
					continue
				}
				gap := b.off - (a.off + a.size)
				require.GreaterOrEqual(t, gap, uintptr(hwLine),
					"%s (%s) and %s (%s) are %d bytes apart", a.name, a.group, b.name, b.group, gap)
			}
		}
	}
	// The layout must not depend on T.
	t.Run("bytes", func(t *testing.T) { check(t, layoutOf[[]byte]()) })
	t.Run("pointer", func(t *testing.T) { check(t, layoutOf[*dgram]()) })
	t.Run("struct", func(t *testing.T) { check(t, layoutOf[dgram]()) })
}

// docs/architecture.md quotes 32 bytes per slot of a []byte ring (the
// sequence number and the slice header).
func TestSlotSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are documented for 64-bit platforms")
	}
	if got := unsafe.Sizeof(slot[[]byte]{}); got != 32 {
		t.Fatalf("slot[[]byte] is %d bytes, docs/architecture.md says 32", got)
	}
}
