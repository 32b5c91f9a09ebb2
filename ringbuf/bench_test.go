package ringbuf

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Every benchmark here has a Go-channel twin of the same capacity, so the
// numbers can be read side by side:
//
//	go test -run ^$ -bench . ./ringbuf/

const benchCap = 1024

var benchBuf = make([]byte, 1500)

// BenchmarkPushPop is the cost of one push plus one pop with no contention:
// one goroutine fills 64 and empties them. ns/op is per datagram.
func BenchmarkPushPop(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		r := New[[]byte](benchCap)
		dst := make([][]byte, 64)
		for i := 0; i < b.N; i += 64 {
			for range 64 {
				r.TryPush(benchBuf)
			}
			r.PopBatch(dst)
		}
	})
	b.Run("chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, benchCap)
		dst := make([][]byte, 64)
		for i := 0; i < b.N; i += 64 {
			for range 64 {
				ch <- benchBuf
			}
			for j := range dst {
				dst[j] = <-ch
			}
		}
	})
}

// BenchmarkSPSC is one producer goroutine and one consumer goroutine. The
// producer retries a dropped push (after yielding) so that every datagram
// gets through, like the channel's blocking send. ns/op is per datagram.
func BenchmarkSPSC(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		r := New[[]byte](benchCap)
		done := make(chan struct{})
		var retries int
		go func() {
			defer close(done)
			for range b.N {
				for !r.TryPush(benchBuf) {
					retries++
					runtime.Gosched()
				}
			}
		}()
		dst := make([][]byte, 64)
		for got := 0; got < b.N; {
			n := r.PopBatch(dst)
			got += n
			if n == 0 {
				r.Wait(nil)
			}
		}
		<-done
		b.ReportMetric(float64(retries)/float64(b.N), "drops/op")
		b.ReportMetric(float64(r.Stats().Wakeups)/float64(b.N), "wakes/op")
	})
	b.Run("chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, benchCap)
		go func() {
			for range b.N {
				ch <- benchBuf
			}
			close(ch)
		}()
		for range ch {
		}
	})
}

// BenchmarkParallelPush is GOMAXPROCS producers pushing into one ring that a
// consumer goroutine drains: the dispatcher → session fan-in. Drops are
// dropped, as in the router; ns/op is per push attempt.
func BenchmarkParallelPush(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		r := New[[]byte](benchCap)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			dst := make([][]byte, 64)
			for {
				if r.PopBatch(dst) == 0 && !r.Wait(stop) {
					return
				}
			}
		})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.TryPush(benchBuf)
			}
		})
		b.StopTimer()
		close(stop)
		wg.Wait()
		st := r.Stats()
		b.ReportMetric(float64(st.Dropped)/float64(b.N), "drops/op")
		b.ReportMetric(float64(st.Wakeups)/float64(b.N), "wakes/op")
	})
	b.Run("chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, benchCap)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-ch:
				case <-stop:
					return
				}
			}
		})
		var dropped atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				select {
				case ch <- benchBuf:
				default:
					dropped.Add(1)
				}
			}
		})
		b.StopTimer()
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(dropped.Load())/float64(b.N), "drops/op")
	})
}

// BenchmarkWakeup is the cost of waking a parked consumer. A producer sends
// a batch and waits until the consumer has popped all of it and answered on
// a second ring; both sides park between batches. With batch 1 every
// datagram costs a wake-up each way; with batch 64 the consumer is woken
// about once per 64. ns/op is per datagram; ns/wake is the elapsed time
// divided by all wake-ups, both directions.
func BenchmarkWakeup(b *testing.B) {
	for _, batch := range []int{1, 64} {
		name := "batch1"
		if batch == 64 {
			name = "batch64"
		}
		b.Run("ring/"+name, func(b *testing.B) { benchWakeRing(b, batch) })
		b.Run("chan/"+name, func(b *testing.B) { benchWakeChan(b, batch) })
	}
}

func benchWakeRing(b *testing.B, batch int) {
	b.ReportAllocs()
	in, ack := New[[]byte](benchCap), New[int](2)
	rounds := (b.N + batch - 1) / batch
	var wg sync.WaitGroup
	wg.Go(func() { // consumer
		dst := make([][]byte, 64)
		for range rounds {
			for got := 0; got < batch; {
				n := in.PopBatch(dst)
				got += n
				if n == 0 {
					in.Wait(nil)
				}
			}
			ack.TryPush(1)
		}
	})
	one := make([]int, 1)
	for range rounds {
		for range batch {
			in.TryPush(benchBuf)
		}
		for ack.PopBatch(one) == 0 {
			ack.Wait(nil)
		}
	}
	b.StopTimer()
	wg.Wait()
	wakes := in.Stats().Wakeups + ack.Stats().Wakeups
	b.ReportMetric(float64(in.Stats().Wakeups)/float64(rounds*batch), "wakes/dgram")
	if wakes > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(wakes), "ns/wake")
	}
}

func benchWakeChan(b *testing.B, batch int) {
	b.ReportAllocs()
	in, ack := make(chan []byte, benchCap), make(chan int, 2)
	rounds := (b.N + batch - 1) / batch
	go func() { // consumer
		for range rounds {
			for range batch {
				<-in
			}
			ack <- 1
		}
	}()
	for range rounds {
		for range batch {
			in <- benchBuf
		}
		<-ack
	}
}

// BenchmarkMPSC is four producer goroutines and one consumer, with every
// datagram delivered: a dropped push is retried after yielding, like the
// channel's blocking send. ns/op is per datagram.
func BenchmarkMPSC(b *testing.B) {
	const producers = 4
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		r := New[[]byte](benchCap)
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := p; i < b.N; i += producers {
					for !r.TryPush(benchBuf) {
						runtime.Gosched()
					}
				}
			})
		}
		dst := make([][]byte, 64)
		for got := 0; got < b.N; {
			n := r.PopBatch(dst)
			got += n
			if n == 0 {
				r.Wait(nil)
			}
		}
		wg.Wait()
		st := r.Stats()
		b.ReportMetric(float64(st.Dropped)/float64(b.N), "drops/op")
		b.ReportMetric(float64(st.Wakeups)/float64(b.N), "wakes/op")
	})
	b.Run("chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, benchCap)
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := p; i < b.N; i += producers {
					ch <- benchBuf
				}
			})
		}
		for range b.N {
			<-ch
		}
		wg.Wait()
	})
}
