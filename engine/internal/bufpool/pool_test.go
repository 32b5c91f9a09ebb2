package bufpool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type buf struct {
	data [64]byte
	Flag
}

func TestPutTwicePanics(t *testing.T) {
	var p Pool[buf, *buf]
	b := p.Get()
	p.Put(b)
	require.PanicsWithValue(t, "bufpool: buffer put twice", func() { p.Put(b) })
	c := p.Get() // b or a new one: either is free to use and to put again
	require.NotPanics(t, func() { p.Put(c) })
}

func TestGetPutDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	var p Pool[buf, *buf]
	p.Put(p.Get())
	require.Zero(t, testing.AllocsPerRun(100, func() { p.Put(p.Get()) }))
}
