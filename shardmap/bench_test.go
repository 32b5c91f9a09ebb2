package shardmap

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// Benchmarks compare Map with the two maps a router would otherwise use:
// sync.Map and a map guarded by a sync.RWMutex. Keys are stream-ID-like
// (multiples of 4). sync.Map takes its keys pre-boxed as `any`, so that its
// numbers measure the map; boxing a uint64 >= 256 on every call would add an
// 8-byte allocation per Load.

// rwMap is the baseline a router would write without this package.
type rwMap struct {
	mu sync.RWMutex
	m  map[uint64]*int
}

func (r *rwMap) load(k uint64) *int {
	r.mu.RLock()
	v := r.m[k]
	r.mu.RUnlock()
	return v
}

func (r *rwMap) store(k uint64, v *int) {
	r.mu.Lock()
	r.m[k] = v
	r.mu.Unlock()
}

func (r *rwMap) delete(k uint64) {
	r.mu.Lock()
	delete(r.m, k)
	r.mu.Unlock()
}

// fixture is one set of equal maps, built once per size and shared by the
// benchmarks so that their setup is paid once and never timed.
type fixture struct {
	sm                 *Map[int]
	sync               *sync.Map
	rw                 *rwMap
	hits, misses       []uint64 // shuffled
	hitsAny, missesAny []any
}

var (
	fixtureMu sync.Mutex
	fixtures  = map[int]*fixture{}
	benchVal  = new(int)
)

func getFixture(b *testing.B, n int) *fixture {
	if n >= 1_000_000 && testing.Short() {
		b.Skip("1M entries: skipped in -short mode")
	}
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if f := fixtures[n]; f != nil {
		return f
	}
	f := &fixture{sm: New[int](), sync: new(sync.Map), rw: &rwMap{m: make(map[uint64]*int)}}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	for _, i := range rng.Perm(n) {
		k := uint64(i) * 4
		f.sm.Store(k, benchVal)
		f.sync.Store(k, benchVal)
		f.rw.m[k] = benchVal
		f.hits = append(f.hits, k)
		f.misses = append(f.misses, k+2)
		f.hitsAny = append(f.hitsAny, k)
		f.missesAny = append(f.missesAny, k+2)
	}
	fixtures[n] = f
	return f
}

var benchSizes = []int{1, 1_000, 100_000, 1_000_000}

func BenchmarkLoadHit(b *testing.B)  { benchLoad(b, true) }
func BenchmarkLoadMiss(b *testing.B) { benchLoad(b, false) }

func benchLoad(b *testing.B, hit bool) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			f := getFixture(b, n)
			keys, keysAny := f.misses, f.missesAny
			if hit {
				keys, keysAny = f.hits, f.hitsAny
			}
			b.Run("shardmap", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if (f.sm.Load(keys[i]) != nil) != hit {
						b.Fatal("wrong result")
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
			b.Run("syncmap", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, ok := f.sync.Load(keysAny[i]); ok != hit {
						b.Fatal("wrong result")
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
			b.Run("rwmap", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if (f.rw.load(keys[i]) != nil) != hit {
						b.Fatal("wrong result")
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
		})
	}
}

// BenchmarkLoadParallel is the data plane: every P Loads hits at once.
func BenchmarkLoadParallel(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			f := getFixture(b, n)
			b.Run("shardmap", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := rand.IntN(len(f.hits))
					for pb.Next() {
						if f.sm.Load(f.hits[i]) == nil {
							panic("miss")
						}
						if i++; i == len(f.hits) {
							i = 0
						}
					}
				})
			})
			b.Run("syncmap", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := rand.IntN(len(f.hits))
					for pb.Next() {
						if _, ok := f.sync.Load(f.hitsAny[i]); !ok {
							panic("miss")
						}
						if i++; i == len(f.hits) {
							i = 0
						}
					}
				})
			})
			b.Run("rwmap", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := rand.IntN(len(f.hits))
					for pb.Next() {
						if f.rw.load(f.hits[i]) == nil {
							panic("miss")
						}
						if i++; i == len(f.hits) {
							i = 0
						}
					}
				})
			})
		})
	}
}

// BenchmarkChurn is the control plane: streams open and close, so each op
// stores a new, ever-increasing key and deletes the one opened live ops
// before, keeping live entries. It exercises tombstones and rebuilds. For
// sync.Map the new key is boxed on each Store, as a caller would have to.
func BenchmarkChurn(b *testing.B) {
	for _, live := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			b.Run("shardmap", func(b *testing.B) {
				m := New[int]()
				for k := range uint64(live) {
					m.Store(k*4, benchVal)
				}
				next := uint64(live)
				b.ReportAllocs()
				for b.Loop() {
					m.Store(next*4, benchVal)
					m.Delete((next - uint64(live)) * 4)
					next++
				}
			})
			b.Run("syncmap", func(b *testing.B) {
				var m sync.Map
				for k := range uint64(live) {
					m.Store(k*4, benchVal)
				}
				next := uint64(live)
				b.ReportAllocs()
				for b.Loop() {
					m.Store(next*4, benchVal)
					m.Delete((next - uint64(live)) * 4)
					next++
				}
			})
			b.Run("rwmap", func(b *testing.B) {
				m := &rwMap{m: make(map[uint64]*int)}
				for k := range uint64(live) {
					m.store(k*4, benchVal)
				}
				next := uint64(live)
				b.ReportAllocs()
				for b.Loop() {
					m.store(next*4, benchVal)
					m.delete((next - uint64(live)) * 4)
					next++
				}
			})
		})
	}
}

// BenchmarkNew measures creating an empty map, which a proxy does per
// connection, and reports its heap size.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	var m *Map[int]
	for b.Loop() {
		m = New[int]()
	}
	_ = m
}

// BenchmarkLoadParallelWithWriter is the router under load: all Ps Load
// while one more goroutine keeps storing and deleting other keys, as a
// control plane opening and closing streams would. ns/op is per Load.
func BenchmarkLoadParallelWithWriter(b *testing.B) {
	const n, live = 100_000, 1_000
	f := getFixture(b, n)
	// The writer's keys are far above the fixture's and removed afterwards.
	const base = uint64(1) << 40
	withWriter := func(b *testing.B, store func(uint64), del func(uint64), load func(i int) bool) {
		stop, done := make(chan struct{}), make(chan uint64)
		go func() {
			k := base
			for {
				select {
				case <-stop:
					for j := k - live; j < k; j++ {
						del(j * 4)
					}
					done <- k - base
					return
				default:
				}
				store(k * 4)
				if k >= base+live {
					del((k - live) * 4)
				}
				k++
			}
		}()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(f.hits))
			for pb.Next() {
				if !load(i) {
					panic("miss")
				}
				if i++; i == len(f.hits) {
					i = 0
				}
			}
		})
		b.StopTimer()
		close(stop)
		writes := <-done
		b.ReportMetric(float64(writes)/b.Elapsed().Seconds(), "writes/s")
	}
	b.Run("shardmap", func(b *testing.B) {
		withWriter(b,
			func(k uint64) { f.sm.Store(k, benchVal) },
			func(k uint64) { f.sm.Delete(k) },
			func(i int) bool { return f.sm.Load(f.hits[i]) != nil })
	})
	b.Run("syncmap", func(b *testing.B) {
		withWriter(b,
			func(k uint64) { f.sync.Store(k, benchVal) },
			func(k uint64) { f.sync.Delete(k) },
			func(i int) bool { _, ok := f.sync.Load(f.hitsAny[i]); return ok })
	})
	b.Run("rwmap", func(b *testing.B) {
		withWriter(b,
			func(k uint64) { f.rw.store(k, benchVal) },
			func(k uint64) { f.rw.delete(k) },
			func(i int) bool { return f.rw.load(f.hits[i]) != nil })
	})
}
