//go:build !race && !ringbufdebug

package ringbuf

// checkInvariants is off in normal builds; see invariants_check.go.
const checkInvariants = false
