package baseline

import (
	"sync"
	"sync/atomic"
)

// singleRouter is the seed's design (Erlang masque_server_connection): one
// goroutine, routineSingleRouter, owns a plain map of sessions and receives
// datagrams and control messages over one channel, so routing waits behind
// control work and control work waits behind routing.
//
// Overflow policy: the inbox is bounded (inboxCap) and Dispatch blocks when
// it is full, as a dispatcher waits for the seed's single process to catch
// up; session mailboxes drop when full (counted in dropped).
type singleRouter struct {
	cfg     Config
	inbox   chan srMsg  // every datagram and every control message
	closed  atomic.Bool // set by Close before stop: Dispatch drops from then on
	stop    closeOnce   // closed by Close: the router goroutine shuts down
	stopped chan struct{}
	dropped atomic.Uint64
	parks   parkCounter    // consumer parks, for Wakeups
	wg      sync.WaitGroup // the router goroutine and every session goroutine
}

// inboxCap bounds the router goroutine's inbox.
const inboxCap = 1024

type srOp uint8

const (
	srData srOp = iota
	srAdd
	srRemove
)

type srMsg struct {
	op    srOp
	id    uint64
	d     []byte     // srData
	c     Consumer   // srAdd
	reply chan error // srAdd, srRemove; buffered(1)
}

// NewSingleRouter returns the seed's design: one router goroutine, one
// channel for data and control.
func NewSingleRouter(cfg Config) Router {
	r := &singleRouter{
		cfg:     cfg.withDefaults(),
		inbox:   make(chan srMsg, inboxCap),
		stop:    newCloseOnce(),
		stopped: make(chan struct{}),
	}
	r.wg.Add(1)
	go r.routineSingleRouter()
	return r
}

// Dispatch sends d to the router goroutine, blocking while its inbox is
// full. A Dispatch that runs concurrently with Close can leave its datagram
// in the inbox after the router goroutine has gone (neither delivered, nor
// counted, nor released); one that starts after Close returned drops.
func (r *singleRouter) Dispatch(streamID uint64, d []byte) bool {
	m := srMsg{op: srData, id: streamID, d: d}
	if r.closed.Load() {
		return r.drop(m)
	}
	select {
	case r.inbox <- m:
		return true
	default:
	}
	return r.dispatchSlow(m)
}

// dispatchSlow blocks until the inbox has room or the router is closed.
func (r *singleRouter) dispatchSlow(m srMsg) bool {
	select {
	case r.inbox <- m:
		return true
	case <-r.stop.ch:
		return r.drop(m)
	}
}

func (r *singleRouter) drop(m srMsg) bool {
	r.dropped.Add(1)
	r.cfg.Release(m.d)
	return false
}

func (r *singleRouter) Add(streamID uint64, c Consumer) error {
	return r.call(srMsg{op: srAdd, id: streamID, c: c, reply: make(chan error, 1)})
}

func (r *singleRouter) Remove(streamID uint64) error {
	return r.call(srMsg{op: srRemove, id: streamID, reply: make(chan error, 1)})
}

func (r *singleRouter) call(m srMsg) error {
	if r.closed.Load() {
		return ErrClosed
	}
	select {
	case r.inbox <- m:
	case <-r.stop.ch:
		return ErrClosed
	}
	select {
	case err := <-m.reply:
		return err
	case <-r.stopped:
		return ErrClosed // the shutdown answers queued calls; this is a late one
	}
}

func (r *singleRouter) Dropped() uint64 { return r.dropped.Load() }

func (r *singleRouter) Close() {
	r.closed.Store(true) // before stop: a Dispatch that sees stop closed also sees this
	r.stop.close()
	r.wg.Wait()
}

// routineSingleRouter is the router goroutine. It alone touches sessions.
func (r *singleRouter) routineSingleRouter() {
	defer r.wg.Done()
	sessions := make(map[uint64]*chanSession)
	for {
		if len(r.inbox) == 0 {
			r.parks.add(0) // about to park on the inbox
		}
		select {
		case m := <-r.inbox:
			r.handle(sessions, m)
		case <-r.stop.ch:
			// Teardown order: end every session (their goroutines
			// discard what they hold), answer or drop what is still in
			// the inbox, then announce stopped for late callers.
			for id, s := range sessions {
				s.end()
				delete(sessions, id)
			}
			for {
				select {
				case m := <-r.inbox:
					if m.op == srData {
						r.dropped.Add(1)
						r.cfg.Release(m.d)
					} else {
						m.reply <- ErrClosed
					}
					continue
				default:
				}
				break
			}
			close(r.stopped)
			return
		}
	}
}

func (r *singleRouter) handle(sessions map[uint64]*chanSession, m srMsg) {
	switch m.op {
	case srData:
		if s := sessions[m.id]; s != nil && s.tryPush(m.d) {
			return
		}
		r.dropped.Add(1)
		r.cfg.Release(m.d)
	case srAdd:
		if sessions[m.id] != nil {
			m.reply <- ErrExists
			return
		}
		s := newChanSession(r.cfg)
		sessions[m.id] = s
		r.wg.Add(1)
		go routineChanSession(s, m.id, m.c, r.cfg, &r.dropped, &r.parks, &r.wg)
		m.reply <- nil
	case srRemove:
		if s := sessions[m.id]; s != nil {
			delete(sessions, m.id)
			s.end()
		}
		m.reply <- nil
	}
}

func (r *singleRouter) Wakeups() uint64 { return r.parks.load() }
