package bench

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/masqroute/masqroute/bench/baseline"
)

const (
	// latencySessions is the session count of BenchmarkLatency.
	latencySessions = 1000
	// latencyRate is the datagrams per second each dispatcher offers in
	// BenchmarkLatency: far below what any implementation delivers at
	// 1000 sessions (over 1M/s), so that the latency is the hand-off and
	// wake-up path, not time spent queueing behind a backlog.
	latencyRate = 100_000
)

// BenchmarkLatency measures dispatch-to-consumer latency at 1000 sessions,
// with and without churn, at a paced load (latencyRate per dispatcher), and
// reports its p50, p99 and p999 in ns. ns/op is set by the pacing (10 µs
// divided by the dispatchers) and means nothing here.
func BenchmarkLatency(b *testing.B) {
	defer closeCached()
	for _, im := range baseline.Impls {
		b.Run("impl="+im.Name, func(b *testing.B) {
			for _, churn := range []bool{false, true} {
				b.Run(fmt.Sprintf("churn=%d", b2i(churn)), func(b *testing.B) {
					s := getSetup(b, setupKey{impl: im.Name, sessions: latencySessions, latency: true})
					w := startWindow(b, s, churn)
					s.lat.reset()
					b.RunParallel(s.latencyLoop)
					w.stop(b)
					p50, p99, p999 := s.lat.quantiles()
					b.ReportMetric(p50, "p50-ns")
					b.ReportMetric(p99, "p99-ns")
					b.ReportMetric(p999, "p999-ns")
				})
			}
		})
	}
}

// epoch is the zero of the timestamps written into payloads; time.Since
// reads the monotonic clock.
var epoch = time.Now()

func stamp() int64 { return int64(time.Since(epoch)) }

// latencyLoop dispatches one datagram every 1/latencyRate seconds, with a
// timestamp in it, and yields the processor while it waits.
func (s *setup) latencyLoop(pb *testing.PB) {
	rnd := newRng(s.seeds.Add(1))
	ids := s.ids
	n := uint64(len(ids))
	const interval = int64(time.Second) / latencyRate
	next := stamp()
	var calls uint64
	for pb.Next() {
		for stamp() < next {
			runtime.Gosched()
		}
		next += interval
		id := ids[rnd.intn(n)].Load()
		d := getPayload()
		binary.LittleEndian.PutUint64(d, uint64(stamp()))
		s.r.Dispatch(id, d)
		calls++
	}
	s.dispatched.Add(calls)
}

// latencyRecorder is the histogram every sink of a latency setup records
// into. One clock read per batch: a datagram's latency ends when its batch
// reaches the consumer.
type latencyRecorder struct {
	mu sync.Mutex // guards h
	h  *hdrhistogram.Histogram
}

const maxLatency = int64(10 * time.Second)

func newLatencyRecorder() *latencyRecorder {
	return &latencyRecorder{h: hdrhistogram.New(1, maxLatency, 3)}
}

func (l *latencyRecorder) record(batch [][]byte) {
	now := stamp()
	l.mu.Lock()
	for _, d := range batch {
		v := now - int64(binary.LittleEndian.Uint64(d))
		_ = l.h.RecordValue(min(max(v, 1), maxLatency))
	}
	l.mu.Unlock()
}

func (l *latencyRecorder) reset() {
	l.mu.Lock()
	l.h.Reset()
	l.mu.Unlock()
}

func (l *latencyRecorder) quantiles() (p50, p99, p999 float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.h.ValueAtQuantile(50)), float64(l.h.ValueAtQuantile(99)), float64(l.h.ValueAtQuantile(99.9))
}
