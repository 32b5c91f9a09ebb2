package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// fakeTransport echoes in memory: Send puts a copy of the datagram on its
// tunnel's queue (dropping it when drop says so or the queue is full), and
// tunnel i's reader takes it from there. It checks that no tunnel ever has
// more than maxInFlight datagrams in flight.
type fakeTransport struct {
	queue       int              // per-tunnel queue length
	drop        func(n int) bool // drop the n-th datagram sent (0-based)
	maxInFlight int64            // 0: unchecked

	flows *fakeFlows
}

func (t *fakeTransport) Name() string { return "fake" }

func (t *fakeTransport) Open(_ context.Context, _ string, tunnels, _ int) (Flows, error) {
	f := &fakeFlows{t: t, done: make(chan struct{})}
	for range tunnels {
		f.q = append(f.q, make(chan []byte, t.queue))
	}
	f.inFlight = make([]atomic.Int64, tunnels)
	t.flows = f
	return f, nil
}

type fakeFlows struct {
	t        *fakeTransport
	q        []chan []byte
	inFlight []atomic.Int64
	n        atomic.Int64 // datagrams sent
	overflow atomic.Bool  // a tunnel exceeded maxInFlight
	done     chan struct{}
	once     sync.Once
}

func (f *fakeFlows) Send(i int, b []byte) error {
	select {
	case <-f.done:
		return errors.New("closed")
	default:
	}
	n := f.n.Add(1) - 1
	if f.t.drop != nil && f.t.drop(int(n)) {
		return nil
	}
	if v := f.inFlight[i].Add(1); f.t.maxInFlight > 0 && v > f.t.maxInFlight {
		f.overflow.Store(true)
	}
	select {
	case f.q[i] <- append([]byte(nil), b...):
	default:
		f.inFlight[i].Add(-1)
	}
	return nil
}

func (f *fakeFlows) Readers() []Reader {
	rs := make([]Reader, len(f.q))
	for i, q := range f.q {
		rs[i] = func(buf []byte) (int, error) {
			select {
			case d := <-q:
				f.inFlight[i].Add(-1)
				return copy(buf, d), nil
			case <-f.done:
				return 0, errors.New("closed")
			}
		}
	}
	return rs
}

func (f *fakeFlows) Probe() Probe {
	return ProbeFunc(func(context.Context) (Counters, error) {
		return Counters{Hops: []Hop{{Stage: StageTargetIn, Name: "fake: sent", Count: uint64(f.n.Load())}}}, nil
	})
}

func (f *fakeFlows) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}
