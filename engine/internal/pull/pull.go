// Package pull is the consumer side of a pull-mode session: one registered
// with Router.Register and a nil Handler, whose owner takes its datagrams
// itself instead of having a session goroutine hand them over. engine/client
// reads its tunnels so.
//
// It is not engine API: an embedder's sessions have a Handler, and a
// public Pop on every Session would be a second way to consume a ring that
// already has a consumer. So package engine installs its operations here,
// in its init, and only packages under engine/ can import them.
//
// Why a hook and not a method: package engine cannot export a method to
// engine/client alone, and this package cannot name engine.Session (engine
// imports it). The operations are therefore generic in the session type;
// Get asserts the type once, so a caller holds typed functions, with no
// interface conversion per call.
package pull

// Ops are the pull-mode operations on a session of type S (engine.Session).
//
// Pop moves up to len(dst) datagrams into dst and returns how many; it does
// not block. Arm, Notify and Disarm let the owner park until the ring is
// non-empty, together with its own deadlines:
//
//	if ops.Arm(s) {
//		select {
//		case <-ops.Notify(s):
//		case <-s.Done():
//		case <-deadline:
//		}
//		ops.Disarm(s)
//	}
//	n := ops.Pop(s, buf)
//
// Arm returns false when there is something to pop already, or when the
// session has ended (then Done is closed, or about to be). Only one
// goroutine may wait at a time.
type Ops[S any] struct {
	Pop    func(s *S, dst [][]byte) int
	Arm    func(s *S) bool
	Notify func(s *S) <-chan struct{}
	Disarm func(s *S)
}

// ops holds an Ops[engine.Session]. It is written once, by package engine's
// init, which runs before any package that imports engine is initialized.
var ops any

// Set installs the operations. Only package engine calls it, from init.
func Set[S any](o Ops[S]) {
	if ops != nil {
		panic("pull: Set called twice")
	}
	ops = o
}

// Get returns the operations for sessions of type S. It panics if package
// engine installed none for S.
func Get[S any]() Ops[S] {
	o, ok := ops.(Ops[S])
	if !ok {
		panic("pull: no operations installed for this session type")
	}
	return o
}
