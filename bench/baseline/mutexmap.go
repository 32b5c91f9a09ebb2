package baseline

import (
	"sync"
	"sync/atomic"
)

// mutexMapRouter is quic-go http3's design (rawConn.receiveDatagrams and its
// datagrammer): the session map under a sync.Mutex, and per session a
// bounded queue under a mutex of its own plus a 1-buffered channel that
// signals the consumer.
//
// Two departures from quic-go v0.65.0, both in the baseline's favour or
// neutral: the queue holds Config.QueueCap datagrams (quic-go: 32) so that
// drop behaviour matches the other implementations, it is a fixed ring
// rather than a slice that is resliced and re-appended (which allocates),
// and the consumer is signalled only on the empty → non-empty edge (quic-go
// signals on every enqueue; the 1-buffered channel absorbs the extra ones).
//
// Overflow policy: a full queue drops the newest datagram (counted).
type mutexMapRouter struct {
	cfg Config

	mu       sync.Mutex // guards sessions and closed
	sessions map[uint64]*mqSession
	closed   bool

	dropped atomic.Uint64
	parks   parkCounter    // session goroutine parks, for Wakeups
	wg      sync.WaitGroup // session goroutines
}

// mqSession is one session's queue.
type mqSession struct {
	mu     sync.Mutex // guards q, head, n and closed
	q      [][]byte   // ring of len Config.QueueCap; [head, head+n) are queued
	head   int
	n      int
	closed bool

	hasData chan struct{} // 1-buffered; a token on the empty → non-empty edge
	done    chan struct{} // closed by Remove after setting closed
}

// NewMutexMap returns quic-go http3's design: a mutex-guarded map and a
// mutex-guarded queue per session.
func NewMutexMap(cfg Config) Router {
	return &mutexMapRouter{cfg: cfg.withDefaults(), sessions: make(map[uint64]*mqSession)}
}

func (r *mutexMapRouter) Dispatch(streamID uint64, d []byte) bool {
	r.mu.Lock()
	s := r.sessions[streamID]
	r.mu.Unlock()
	if s != nil && s.tryEnqueue(d) {
		return true
	}
	r.dropped.Add(1)
	r.cfg.Release(d)
	return false
}

// tryEnqueue appends d unless the queue is full or closed.
func (s *mqSession) tryEnqueue(d []byte) bool {
	s.mu.Lock()
	if s.closed || s.n == len(s.q) {
		s.mu.Unlock()
		return false
	}
	i := s.head + s.n
	if i >= len(s.q) {
		i -= len(s.q)
	}
	s.q[i] = d
	s.n++
	wake := s.n == 1
	s.mu.Unlock()
	// Signalling after the unlock loses nothing: a consumer that saw the
	// queue empty waits on hasData, and the token stays there until it
	// takes it. A token it no longer needs costs one spurious wake-up.
	if wake {
		select {
		case s.hasData <- struct{}{}:
		default:
		}
	}
	return true
}

// popLocked moves up to len(dst) queued datagrams into dst.
func (s *mqSession) popLocked(dst [][]byte) int {
	n := min(s.n, len(dst))
	for k := range n {
		dst[k] = s.q[s.head]
		s.q[s.head] = nil
		s.head++
		if s.head == len(s.q) {
			s.head = 0
		}
	}
	s.n -= n
	return n
}

// routineMutexSession is the session goroutine: pop a batch under the
// session's mutex, hand it over, park on hasData only when the queue is
// empty. Once the session is closed it discards what is left.
func (r *mutexMapRouter) routineMutexSession(s *mqSession, key uint64, c Consumer) {
	defer r.wg.Done()
	batch := make([][]byte, r.cfg.BatchSize)
	for {
		s.mu.Lock()
		if s.closed {
			for {
				n := s.popLocked(batch)
				if n == 0 {
					break
				}
				r.dropped.Add(uint64(n))
				for i := range n {
					r.cfg.Release(batch[i])
					batch[i] = nil
				}
			}
			s.mu.Unlock()
			return
		}
		n := s.popLocked(batch)
		s.mu.Unlock()
		if n == 0 {
			r.parks.add(key)
			select {
			case <-s.hasData:
			case <-s.done:
			}
			continue
		}
		c.HandleDatagrams(batch[:n])
		for i := range n {
			r.cfg.Release(batch[i])
			batch[i] = nil
		}
	}
}

func (r *mutexMapRouter) Add(streamID uint64, c Consumer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.sessions[streamID] != nil {
		return ErrExists
	}
	s := &mqSession{
		q:       make([][]byte, r.cfg.QueueCap),
		hasData: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	r.sessions[streamID] = s
	r.wg.Add(1)
	go r.routineMutexSession(s, streamID, c)
	return nil
}

func (r *mutexMapRouter) Remove(streamID uint64) error {
	r.mu.Lock()
	s := r.sessions[streamID]
	delete(r.sessions, streamID)
	r.mu.Unlock()
	if s != nil {
		s.end()
	}
	return nil
}

// end closes the session's queue (later enqueues drop) and wakes its
// consumer, which discards what is left.
func (s *mqSession) end() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.done)
}

func (r *mutexMapRouter) Dropped() uint64 { return r.dropped.Load() }

func (r *mutexMapRouter) Close() {
	r.mu.Lock()
	var ended []*mqSession
	if !r.closed {
		r.closed = true
		for id, s := range r.sessions {
			ended = append(ended, s)
			delete(r.sessions, id)
		}
	}
	r.mu.Unlock()
	for _, s := range ended {
		s.end()
	}
	r.wg.Wait()
}

func (r *mutexMapRouter) Wakeups() uint64 { return r.parks.load() }
