package udpio

import (
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func TestBufferLayout(t *testing.T) {
	var b Buffer
	require.Len(t, b.Payload(), MaxPayload)
	f := b.Frame(3, 10)
	require.Len(t, f, 13)
	f[0], f[3] = 0xaa, 0xbb
	require.Equal(t, byte(0xaa), b.data[Headroom-3])
	require.Equal(t, byte(0xbb), b.Payload()[0])
	require.Len(t, b.Frame(Headroom, MaxPayload), Headroom+MaxPayload)
	require.Panics(t, func() { b.Frame(Headroom+1, 0) })
	require.Panics(t, func() { b.Frame(0, MaxPayload+1) })
	// 2048 bytes is a malloc size class: no slack per Buffer.
	require.Equal(t, uintptr(2048), unsafe.Sizeof(b))
}

func TestPoolDoublePut(t *testing.T) {
	var p Pool
	b := p.Get()
	p.Put(b)
	require.PanicsWithValue(t, "bufpool: buffer put twice", func() { p.Put(b) })
}

func TestPoolReuse(t *testing.T) {
	var p Pool
	b := p.Get()
	p.Put(b)
	c := p.Get() // may or may not be b: sync.Pool promises nothing
	// Get cleared its free flag: a Put does not take it for a double put.
	require.NotPanics(t, func() { p.Put(c) })
}

func TestPoolZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops Puts at random under the race detector")
	}
	var p Pool
	p.Put(p.Get())
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		b := p.Get()
		b.Payload()[0] = 1
		p.Put(b)
	}))
}

func TestPoolConcurrent(t *testing.T) {
	var p Pool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				b := p.Get()
				b.Payload()[0] = byte(g + i)
				p.Put(b)
			}
		})
	}
	wg.Wait()
}
