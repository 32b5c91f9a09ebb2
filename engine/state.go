package engine

import (
	"strconv"
	"sync/atomic"
)

// State is the life-cycle state of a session. It lives in one atomic word;
// every transition is a compare-and-swap, so two goroutines racing to move a
// session out of the same state (an activation and a cancel, say) cannot both
// win.
//
//	                 StartSession
//	                      │
//	                      ▼
//	   ┌──────────── StatePending ───────────┐
//	   │ init ok          │ init error       │ CancelPending, Reset,
//	   │ (init goroutine) │ or panic         │ Close, starter timeout
//	   ▼                  ▼                  ▼ (control plane)
//	StateActive       StateFailed      StateCancelled
//	   │
//	   │ Unregister, Reset, Close, Session.Close (control plane)
//	   ▼
//	StateClosed
//
// Register creates a session directly in StateActive. StateFailed,
// StateCancelled and StateClosed are terminal.
//
// Exactly one goroutine wins the transition out of StatePending; that winner
// alone releases the goroutine waiting in StartSession (it closes the
// session's ready channel), so the waiter is released exactly once.
type State uint32

const (
	StatePending State = iota
	StateActive
	StateFailed
	StateCancelled
	StateClosed
	numStates
)

var stateNames = [numStates]string{"pending", "active", "failed", "cancelled", "closed"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Terminal reports whether no transition leads out of s.
func (s State) Terminal() bool { return s >= StateFailed && s < numStates }

// stateWord is a State in an atomic word.
type stateWord struct{ v atomic.Uint32 }

func (w *stateWord) load() State { return State(w.v.Load()) }

// transition moves the word from old to new and reports whether this caller
// made the move. It is the only way a session changes state after creation.
func (w *stateWord) transition(old, new State) bool {
	return w.v.CompareAndSwap(uint32(old), uint32(new))
}
