package engine

import "errors"

// Errors returned by the Router. Compare with errors.Is; StartSession wraps
// init errors, so errors.Is(err, ErrInitFailed) holds for every failed init
// and errors.Is also reaches the kind's own error.
var (
	// ErrTooManyTunnels: the router already holds MaxTunnels pending or
	// active sessions. A proxy answers 503.
	ErrTooManyTunnels = errors.New("masqroute: too many tunnels")
	// ErrAlreadyActive: CancelPending found the session already active.
	ErrAlreadyActive = errors.New("masqroute: session already active")
	// ErrStreamExists: a session for this stream ID is already routed.
	ErrStreamExists = errors.New("masqroute: stream already has a session")
	// ErrUnknownKind: no session kind is registered for the protocol.
	// A proxy answers 501.
	ErrUnknownKind = errors.New("masqroute: unknown session kind")
	// ErrRouterClosed: the router was closed (the connection is gone).
	ErrRouterClosed = errors.New("masqroute: router closed")
	// ErrCancelled: the pending session was cancelled by CancelPending.
	ErrCancelled = errors.New("masqroute: session cancelled")
	// ErrStreamReset: the peer reset the session's stream.
	ErrStreamReset = errors.New("masqroute: stream reset by peer")
	// ErrUnregistered: the session was removed by Unregister or
	// Session.Close.
	ErrUnregistered = errors.New("masqroute: session unregistered")
	// ErrInitFailed wraps every error a session kind's Start returns,
	// including a panic and the init timeout. A proxy answers 502.
	ErrInitFailed = errors.New("masqroute: session init failed")
	// ErrInitTimeout: Start did not finish within Options.InitTimeout.
	ErrInitTimeout = errors.New("masqroute: session init timed out")
	// ErrInvalidStreamID: the stream ID is not a client-initiated
	// bidirectional stream ID below 2^62.
	ErrInvalidStreamID = errors.New("masqroute: invalid stream ID")
)

// initError wraps a kind's init error so that errors.Is matches both
// ErrInitFailed and the cause.
type initError struct{ cause error }

func (e *initError) Error() string   { return ErrInitFailed.Error() + ": " + e.cause.Error() }
func (e *initError) Unwrap() []error { return []error{ErrInitFailed, e.cause} }
