package baseline

import "sync/atomic"

// parkCounter counts the times a design's consumer goroutines go to sleep
// with nothing to do, so that the benchmarks can report wake-ups per
// datagram for every design alike (a park that ends is a wake-up). Many
// consumers add to it at once, so it is striped over padded cells; the
// cell is chosen by the caller's key (a stream ID).
type parkCounter struct {
	cells [16]struct {
		n atomic.Uint64
		_ [120]byte
	}
}

func (p *parkCounter) add(key uint64) { p.cells[key%uint64(len(p.cells))].n.Add(1) }

func (p *parkCounter) load() uint64 {
	var n uint64
	for i := range p.cells {
		n += p.cells[i].n.Load()
	}
	return n
}
