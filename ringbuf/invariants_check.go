//go:build race || ringbufdebug

package ringbuf

// checkInvariants turns on the slot-is-free assertion in publish. It is on
// in race-detector builds (so every `go test -race` run checks the proof at
// the top of ring.go) and with the ringbufdebug build tag.
const checkInvariants = true
