package udpio

import (
	"errors"
	"syscall"
)

// Errors a Conn classifies. Compare with errors.Is; the returned error also
// wraps the syscall errno, so errors.Is(err, syscall.ECONNREFUSED) holds too.
var (
	// ErrTargetUnreachable: the kernel reported an ICMP error from the
	// target on the connected socket: port unreachable (ECONNREFUSED), host
	// unreachable (EHOSTUNREACH) or network unreachable (ENETUNREACH). The
	// error belongs to an earlier datagram, not to the call that returns
	// it; the kernel reports it once, on whichever read or write comes
	// next, and the socket stays usable. RFC 9298 has no way to tell the
	// client, so a tunnel counts it and goes on.
	ErrTargetUnreachable = errors.New("udpio: target unreachable")

	// ErrTooLarge: the kernel refused a datagram as too large (EMSGSIZE).
	// WriteBatch drops such a datagram, counts it in its tooLarge result
	// and goes on with the rest of the batch; Write returns ErrTooLarge.
	// ReadBatch returns it when the kernel reports an ICMP "fragmentation
	// needed" for an earlier datagram; the socket stays usable.
	ErrTooLarge = errors.New("udpio: datagram too large")
)

// classError is an error the package classified: errors.Is matches both
// the class (ErrTargetUnreachable, ErrTooLarge) and the cause.
type classError struct {
	class error
	op    string // "read" or "write"
	cause error
}

func (e *classError) Error() string {
	return e.class.Error() + ": " + e.op + ": " + e.cause.Error()
}

func (e *classError) Unwrap() []error { return []error{e.class, e.cause} }

// classify returns err wrapped in its class, or nil if the package gives
// err no class. It allocates; it runs only on error paths.
func classify(op string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return &classError{class: ErrTargetUnreachable, op: op, cause: err}
	case errors.Is(err, syscall.EMSGSIZE):
		return &classError{class: ErrTooLarge, op: op, cause: err}
	}
	return nil
}
