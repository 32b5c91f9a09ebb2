package engine

import "sync/atomic"

// readyQueue is a worker's list of sessions that have work: an intrusive
// multi-producer single-consumer queue (Dmitry Vyukov's, with a stub node).
// Producers are whoever takes a session's empty → non-empty edge (Dispatch,
// Close, the control plane); the consumer is the worker.
//
// State: head is the node pushed last (producers swap it); tail is the
// oldest node not yet popped, or the stub (the consumer's alone). The nodes
// from tail to head are linked through next, except that a producer between
// its swap of head and its store of prev.next leaves the link missing for a
// moment.
//
// Invariants:
//
//  1. A node is in at most one queue at a time, once. The ring's Park
//     protocol gives each park exactly one continuation (ringbuf/waker.go),
//     so a session is pushed once per park, and the worker pushes a session
//     back only when it did not park it.
//  2. push never waits and never loops: one swap and one store. pop never
//     waits either; it reports busy when it found the missing-link window,
//     and the worker yields and looks again.
//
// Ordering: push's next.Store publishes the node (and everything its
// producer wrote before, such as a ring publish) to the consumer's
// next.Load.
type readyQueue struct {
	head atomic.Pointer[schedNode] // written by producers
	_    [cacheLinePad - 8]byte
	tail *schedNode // consumer only
	stub schedNode
}

// schedNode is a session's place in a ready queue.
type schedNode struct {
	next atomic.Pointer[schedNode]
	s    *Session
}

func (q *readyQueue) init() {
	q.tail = &q.stub
	q.head.Store(&q.stub)
}

// push appends n. It may be called by any number of goroutines at once.
func (q *readyQueue) push(n *schedNode) {
	n.next.Store(nil)
	prev := q.head.Swap(n) // serialize producers: n is the newest node now
	prev.next.Store(n)     // publish n to the consumer
}

// pop removes the oldest node. It returns nil when the queue is empty, or
// with busy set when a producer is between its swap and its link (the node
// will be there in a moment). It must only be called by the consumer.
func (q *readyQueue) pop() (n *schedNode, busy bool) {
	tail := q.tail
	next := tail.next.Load()
	if tail == &q.stub {
		if next == nil {
			return nil, q.head.Load() != tail
		}
		q.tail, tail = next, next // skip the stub
		next = next.next.Load()
	}
	if next != nil {
		q.tail = next
		return tail, false
	}
	if tail != q.head.Load() {
		return nil, true // a producer swapped head but has not linked yet
	}
	// tail is the only node: put the stub behind it so that it can go.
	q.push(&q.stub)
	if next = tail.next.Load(); next != nil {
		q.tail = next
		return tail, false
	}
	return nil, true // another producer swapped in before the stub
}

// empty reports whether nothing is queued or being queued. Consumer only.
func (q *readyQueue) empty() bool {
	return q.tail == &q.stub && q.head.Load() == &q.stub
}
