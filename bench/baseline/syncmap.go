package baseline

import (
	"sync"
	"sync/atomic"
)

// syncMapRouter looks sessions up in a sync.Map and sends into a buffered
// channel per session without blocking.
//
// Overflow policy: a full channel drops the newest datagram (counted).
type syncMapRouter struct {
	cfg      Config
	sessions sync.Map // uint64 → *chanSession; written under mu

	mu     sync.Mutex // serializes the control plane; guards closed
	closed bool

	dropped atomic.Uint64
	parks   parkCounter    // consumer parks, for Wakeups
	wg      sync.WaitGroup // session goroutines
}

// NewSyncMap returns a router built on sync.Map and a channel per session.
func NewSyncMap(cfg Config) Router {
	return &syncMapRouter{cfg: cfg.withDefaults()}
}

func (r *syncMapRouter) Dispatch(streamID uint64, d []byte) bool {
	if v, ok := r.sessions.Load(streamID); ok && v.(*chanSession).tryPush(d) {
		return true
	}
	r.dropped.Add(1)
	r.cfg.Release(d)
	return false
}

func (r *syncMapRouter) Add(streamID uint64, c Consumer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, ok := r.sessions.Load(streamID); ok {
		return ErrExists
	}
	s := newChanSession(r.cfg)
	r.wg.Add(1)
	go routineChanSession(s, streamID, c, r.cfg, &r.dropped, &r.parks, &r.wg)
	r.sessions.Store(streamID, s) // publish: Dispatch may send from now on
	return nil
}

func (r *syncMapRouter) Remove(streamID uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.sessions.LoadAndDelete(streamID); ok {
		v.(*chanSession).end()
	}
	return nil
}

func (r *syncMapRouter) Dropped() uint64 { return r.dropped.Load() }

func (r *syncMapRouter) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.sessions.Range(func(k, v any) bool {
			r.sessions.Delete(k)
			v.(*chanSession).end()
			return true
		})
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *syncMapRouter) Wakeups() uint64 { return r.parks.load() }
