//go:build linux

package udpio

// Poller: edge-triggered readiness for many Conns, one goroutine for all.
//
// A Poller owns an epoll instance in which each registered Conn's socket
// sits with EPOLLIN|EPOLLET and a registration id as its event data. One
// goroutine, routinePoll, waits for the epoll descriptor itself to become
// readable through Go's netpoller (the descriptor is wrapped in an
// *os.File), so it parks like any goroutine blocked on a socket; when it
// wakes, one epoll_wait(…, 0) hands it every socket that became ready
// since, and it calls each one's handler in turn.
//
//	routinePoll (inside one rc.Read, for the Poller's life):
//	  park ──wake──▶ epoll_wait(…,0) ──▶ round ──▶ more asked, or dense? ──no──▶ park
//	                    ▲                                 │ yes
//	                    └─────────────────────────────────┘
//
// A round calls every ready registration's handler once, in the order they
// became ready. A handler that filled its batch returns true and goes to
// the back of the next round; before that round, a non-blocking epoll_wait
// collects the sockets that became ready meanwhile, which join the round
// behind the re-queued ones. So a socket that never runs dry gets one
// batch per round, as does every other ready socket: none starves.
//
// Parking without a last look. The whole loop runs inside one
// RawConn.Read callback, so the netpoller's readiness of the epoll
// descriptor is never reset between rounds (RawConn.Read resets it only
// when it starts). Any socket event after an epoll_wait raises a new edge
// on the epoll descriptor, which the netpoller keeps until the goroutine
// waits again. So after a sparse round — one event, no handler asking for
// more — the goroutine parks at once, without an epoll_wait that would
// find nothing: paced traffic costs one epoll_wait per wake, not two. After
// a dense round (two or more events, or a full event array) it looks again
// before parking, because more events probably came during the round and
// a park would only be undone by the netpoller at once. A wake that finds
// the descriptor ready for events already collected costs one epoll_wait
// that finds nothing (counted as a wake with no events).
//
// Invariants:
//   - The epoll descriptor is only used inside p.rc.Read or p.rc.Control,
//     and a Conn's socket only inside its RawConn.Control: Go's reference
//     counting then keeps either number from being closed, and reused by
//     another file, while a system call of ours is using it.
//   - An event carries a registration id, never a pointer or a descriptor,
//     and ids are never reused: an event for a registration removed since
//     finds nothing in p.regs and is ignored.
//   - A handler runs only on routinePoll, only with its registration's mu
//     held, and only while the registration is not dead. Remove sets dead
//     under mu; so once Remove returns, the handler is not running and
//     never runs again.
//   - A registration is in p.ready ∪ p.next at most once (queued says so);
//     both lists are owned by routinePoll and bounded by the number of
//     registrations.
//   - Lock order: Registration.mu before Poller.mu. routinePoll never
//     holds both.

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// pollEvents is the most events one epoll_wait returns. More ready
// sockets stay in the epoll instance's ready list and come with the next
// epoll_wait, which the poller makes before parking again.
const pollEvents = 128

// Poller delivers readiness of many Conns to handlers, from one goroutine
// and without a goroutine parked per socket. It uses its own epoll
// instance with edge-triggered registrations.
//
// The handler contract. A handler is called on the Poller's goroutine
// when its Conn may have datagrams to read; it must not block. It reads
// with TryReadBatch, at most a bounded number of batches per call (one is
// best), and returns whether it may have left datagrams behind:
//
//   - A read that returned fewer datagrams than it had room for emptied
//     the socket: return false. The next datagram to arrive raises a new
//     edge and a new call; no read is spent to learn EAGAIN.
//   - A read that filled its room, or returned a classified error
//     (ErrTargetUnreachable, ErrTooLarge), may have left datagrams behind:
//     return true, and the Poller calls the handler again in its next
//     round, after every other ready socket has had its turn.
//   - After any other error (net.ErrClosed, say) return false; the owner
//     should Remove the registration.
//
// A handler must not call Remove or Close on its own Poller (both wait
// for handlers to finish, so they would deadlock); hand that to another
// goroutine. Between the handler and the Conn's owner the usual rule
// holds: only one goroutine reads a Conn, so a registered Conn is read
// only by its handler.
type Poller struct {
	file *os.File        // the epoll descriptor, for Go's netpoller
	rc   syscall.RawConn // file's; the only way the descriptor is used
	done chan struct{}   // closed when routinePoll has returned

	closing atomic.Bool

	mu struct {
		sync.Mutex
		regs   map[uint64]*Registration // live registrations by id
		nextID uint64                   // last id handed out
		closed bool                     // Close has run: Add fails
	}

	// Owned by routinePoll.
	events [pollEvents]unix.EpollEvent
	nev    int             // events[:nev] came from the last epoll_wait
	errno  syscall.Errno   // the last epoll_wait's error, 0 if none
	waited bool            // serve returned false: the next call follows a netpoller wait
	ready  []*Registration // this round
	next   []*Registration // re-queued for the next round
	err    error           // why routinePoll stopped early; read after done
}

// Registration is a Conn added to a Poller; pass it to Remove.
type Registration struct {
	p  *Poller
	c  *Conn
	h  func() (more bool)
	id uint64

	mu   sync.Mutex // held while h runs
	dead bool       // guarded by mu: Remove or Close has run

	queued bool // owned by routinePoll: in p.ready or p.next
}

// NewPoller creates a Poller and starts its goroutine; Close stops it.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// os.NewFile registers a non-blocking descriptor with Go's netpoller;
	// a blocking one it would leave out, and rc.Read could not wait.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	p := &Poller{file: os.NewFile(uintptr(epfd), "udpio-epoll"), done: make(chan struct{})}
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		return nil, err
	}
	p.mu.regs = make(map[uint64]*Registration)
	go p.routinePoll()
	return p, nil
}

// Add registers c: from now on h is called, on the Poller's goroutine,
// whenever c becomes readable (see Poller for what h must do). If c has
// datagrams queued already, h is called for them soon. A Conn must be
// added to one Poller at most once.
//
// Remove the registration before closing c. (If c is closed first, the
// kernel drops it from the epoll instance, but h may still be called
// until Remove, and its reads fail with net.ErrClosed.)
func (p *Poller) Add(c *Conn, h func() (more bool)) (*Registration, error) {
	r := &Registration{p: p, c: c, h: h}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("udpio: poller add: %w", net.ErrClosed)
	}
	p.mu.nextID++
	r.id = p.mu.nextID
	// In the table before epoll_ctl: an event can come at once.
	p.mu.regs[r.id] = r
	p.mu.Unlock()

	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLET,
		Fd:     int32(uint32(r.id)),
		Pad:    int32(uint32(r.id >> 32)),
	}
	var err error
	cerr := c.sys.rc.Control(func(cfd uintptr) {
		perr := p.rc.Control(func(efd uintptr) {
			err = unix.EpollCtl(int(efd), unix.EPOLL_CTL_ADD, int(cfd), &ev)
			if err != nil {
				err = os.NewSyscallError("epoll_ctl", err)
			}
		})
		if perr != nil {
			err = fmt.Errorf("udpio: poller add: %w", perr)
		}
	})
	if cerr != nil {
		err = fmt.Errorf("udpio: poller add: %w", cerr)
	}
	if err != nil {
		p.mu.Lock()
		delete(p.mu.regs, r.id)
		p.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// Remove unregisters r. When it returns, r's handler is not running and
// will never be called again; the Conn may then be closed. Remove is
// idempotent, works after the Conn or the Poller was closed, and must not
// be called from a handler of the same Poller (it waits for the handler).
func (p *Poller) Remove(r *Registration) {
	if r == nil || r.p != p {
		return
	}
	// Waits for a running handler to return: it holds r.mu.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return
	}
	r.dead = true
	// Through both RawConns, so that neither number can be reused under
	// us. If either is closed, there is nothing to delete: closing the
	// socket dropped it from the epoll instance, closing the Poller
	// dropped the instance.
	_ = r.c.sys.rc.Control(func(cfd uintptr) {
		_ = p.rc.Control(func(efd uintptr) {
			_ = unix.EpollCtl(int(efd), unix.EPOLL_CTL_DEL, int(cfd), nil)
		})
	})
	p.mu.Lock()
	delete(p.mu.regs, r.id)
	p.mu.Unlock()
}

// Close stops the Poller's goroutine and waits for it: when Close
// returns, no handler is running or will run. It closes the epoll
// instance but none of the Conns; Remove still works on their
// registrations and Add fails. Close is idempotent; it must not be called
// from a handler. It returns the error that stopped the goroutine early,
// if one did (an epoll_wait failure; none is expected).
func (p *Poller) Close() error {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	// Publish closing before closing the file: routinePoll, between
	// rounds, checks it and stops.
	if !p.closing.Swap(true) {
		// Closing the file evicts it from the netpoller, which wakes
		// routinePoll if it is parked; the descriptor stays open until
		// rc.Read has returned.
		p.file.Close()
	}
	<-p.done
	return p.err
}

// routinePoll is the Poller's goroutine; see the diagram at the top. It
// makes one rc.Read call for the Poller's life, so that the netpoller's
// readiness of the epoll descriptor survives from one wait to the next.
func (p *Poller) routinePoll() {
	defer close(p.done)
	if err := p.rc.Read(p.serve); err != nil && !p.closing.Load() {
		// Close closed the file (RawConn.Read says "use of closed file",
		// internal/poll's ErrFileClosing, which os.ErrClosed does not
		// match): not an error. Anything else is.
		p.err = err
	}
}

// serve is rc.Read's callback. It collects events and runs rounds until a
// round leaves nothing to do, then returns false: rc.Read waits for the
// epoll descriptor's next edge (at once, if one came since the last
// epoll_wait) and calls it again. It returns true to stop: on Close or an
// epoll_wait error.
func (p *Poller) serve(fd uintptr) bool {
	if p.waited {
		p.waited = false
		stats.poll.wakes.Add(1)
	}
	for !p.closing.Load() {
		p.nev, p.errno = 0, 0
		p.epollWait(fd)
		if p.errno != 0 {
			p.err = os.NewSyscallError("epoll_wait", p.errno)
			return true
		}
		if p.nev > 0 {
			stats.poll.events.Add(uint64(p.nev))
			p.collect()
		}
		if len(p.ready) == 0 {
			break // nothing ready: park
		}
		// More may be waiting: the event array was full, or the round
		// is dense enough that events probably arrived during it.
		again := p.nev > 1
		p.round()
		if len(p.ready) == 0 && !again {
			break // a sparse round: park without a last look
		}
	}
	if p.closing.Load() {
		return true
	}
	p.waited = true
	return false
}

// epollWait collects ready events without blocking and reports whether
// there were any (or an error, left in p.errno).
func (p *Poller) epollWait(fd uintptr) bool {
	for {
		stats.poll.waits.Add(1)
		n, err := unix.EpollWait(int(fd), p.events[:], 0)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			p.errno = err.(syscall.Errno)
			return true
		}
		p.nev = n
		return n > 0
	}
}

// collect appends the registrations of events[:nev] to the ready list,
// skipping ids that are gone and registrations already queued.
func (p *Poller) collect() {
	p.mu.Lock()
	for _, ev := range p.events[:p.nev] {
		id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		r := p.mu.regs[id]
		if r == nil || r.queued {
			continue
		}
		r.queued = true
		p.ready = append(p.ready, r)
	}
	p.mu.Unlock()
}

// round gives every ready registration one turn; the ones that ask for
// more make the next round's list.
func (p *Poller) round() {
	round := p.ready
	var requeued uint64
	for i, r := range round {
		round[i] = nil // the list must not keep removed registrations alive
		r.queued = false
		if r.turn() {
			r.queued = true
			p.next = append(p.next, r)
			requeued++
		}
	}
	stats.poll.turns.Add(uint64(len(round)))
	if requeued != 0 {
		stats.poll.requeues.Add(requeued)
	}
	p.ready, p.next = p.next, round[:0]
}

// turn calls the handler unless r was removed, and returns its answer.
func (r *Registration) turn() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return false
	}
	return r.h()
}
