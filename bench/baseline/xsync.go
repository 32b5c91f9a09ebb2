package baseline

import (
	"sync"
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v3"
)

// xsyncRouter looks sessions up in an xsync.MapOf (a modified Cache-Line
// Hash Table with lock-free reads) and sends into a buffered channel per
// session without blocking.
//
// Overflow policy: a full channel drops the newest datagram (counted).
type xsyncRouter struct {
	cfg      Config
	sessions *xsync.MapOf[uint64, *chanSession] // written under mu

	mu     sync.Mutex // serializes the control plane; guards closed
	closed bool

	dropped atomic.Uint64
	parks   parkCounter    // consumer parks, for Wakeups
	wg      sync.WaitGroup // session goroutines
}

// NewXsync returns a router built on xsync.MapOf and a channel per session.
func NewXsync(cfg Config) Router {
	return &xsyncRouter{cfg: cfg.withDefaults(), sessions: xsync.NewMapOf[uint64, *chanSession]()}
}

func (r *xsyncRouter) Dispatch(streamID uint64, d []byte) bool {
	if s, ok := r.sessions.Load(streamID); ok && s.tryPush(d) {
		return true
	}
	r.dropped.Add(1)
	r.cfg.Release(d)
	return false
}

func (r *xsyncRouter) Add(streamID uint64, c Consumer) error {
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

func (r *xsyncRouter) Remove(streamID uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions.LoadAndDelete(streamID); ok {
		s.end()
	}
	return nil
}

func (r *xsyncRouter) Dropped() uint64 { return r.dropped.Load() }

func (r *xsyncRouter) Close() {
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

func (r *xsyncRouter) Wakeups() uint64 { return r.parks.load() }
