package baseline

import (
	"sync"
	"sync/atomic"
)

// mapRouter looks sessions up in a concurrent map M and sends into a
// buffered channel per session without blocking. NewSyncMap and NewXsync
// are this router over sync.Map and xsync.MapOf: the map is the only
// difference between them.
//
// M is a small value type (one pointer) with value-receiver methods, so
// that each instantiation is compiled for its own map type (distinct
// non-pointer type arguments get distinct GC shapes): the map's methods are
// called directly, as in a router written for that map, not through the
// generic dictionary.
//
// Overflow policy: a full channel drops the newest datagram (counted).
type mapRouter[M sessionMap] struct {
	cfg      Config
	sessions M // written under mu

	mu     sync.Mutex // serializes the control plane; guards closed
	closed bool

	dropped atomic.Uint64
	parks   parkCounter    // consumer parks, for Wakeups
	wg      sync.WaitGroup // session goroutines
}

// sessionMap is the part of a concurrent map mapRouter uses.
type sessionMap interface {
	Load(streamID uint64) (*chanSession, bool)
	Store(streamID uint64, s *chanSession)
	LoadAndDelete(streamID uint64) (*chanSession, bool)
	Delete(streamID uint64)
	Range(f func(streamID uint64, s *chanSession) bool)
}

// syncMapOf is a sync.Map typed for mapRouter.
type syncMapOf struct{ m *sync.Map }

func (m syncMapOf) Load(k uint64) (*chanSession, bool) {
	v, ok := m.m.Load(k)
	if !ok {
		return nil, false
	}
	return v.(*chanSession), true
}

func (m syncMapOf) Store(k uint64, s *chanSession) { m.m.Store(k, s) }
func (m syncMapOf) Delete(k uint64)                { m.m.Delete(k) }

func (m syncMapOf) LoadAndDelete(k uint64) (*chanSession, bool) {
	v, ok := m.m.LoadAndDelete(k)
	if !ok {
		return nil, false
	}
	return v.(*chanSession), true
}

func (m syncMapOf) Range(f func(uint64, *chanSession) bool) {
	m.m.Range(func(k, v any) bool { return f(k.(uint64), v.(*chanSession)) })
}

// NewSyncMap returns a router built on sync.Map and a channel per session.
func NewSyncMap(cfg Config) Router {
	return &mapRouter[syncMapOf]{cfg: cfg.withDefaults(), sessions: syncMapOf{new(sync.Map)}}
}

func (r *mapRouter[M]) Dispatch(streamID uint64, d []byte) bool {
	if s, ok := r.sessions.Load(streamID); ok && s.tryPush(d) {
		return true
	}
	r.dropped.Add(1)
	r.cfg.Release(d)
	return false
}

func (r *mapRouter[M]) Add(streamID uint64, c Consumer) error {
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

func (r *mapRouter[M]) Remove(streamID uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions.LoadAndDelete(streamID); ok {
		s.end()
	}
	return nil
}

func (r *mapRouter[M]) Dropped() uint64 { return r.dropped.Load() }

func (r *mapRouter[M]) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.sessions.Range(func(k uint64, s *chanSession) bool {
			r.sessions.Delete(k)
			s.end()
			return true
		})
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *mapRouter[M]) Wakeups() uint64 { return r.parks.load() }
