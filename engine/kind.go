package engine

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"sync"
)

// A Kind starts sessions of one sort: CONNECT-UDP tunnels, CONNECT-IP
// tunnels, or whatever an embedder plugs in. It replaces the seed's
// session_module/1: the router picks the Kind from Args.Protocol through a
// Registry.
type Kind interface {
	// Start prepares a session and returns the Handler that will receive
	// its datagrams. It runs on a goroutine of its own while the router
	// keeps routing; datagrams that arrive meanwhile are held (bounded by
	// Options.PendingBuffer) and handed over in arrival order once Start
	// returns.
	//
	// ctx is cancelled when the session is cancelled (CancelPending, a
	// stream reset, Router.Close) or Options.InitTimeout passes. Start
	// must return promptly after that: Router.Close waits for it. A Start
	// that panics is treated as one that failed.
	//
	// If the session was cancelled while Start ran, the returned Handler
	// is closed at once with the cancel reason and never sees a datagram.
	Start(ctx context.Context, s *Session, args Args) (Handler, error)
}

// KindFunc adapts a function to Kind.
type KindFunc func(ctx context.Context, s *Session, args Args) (Handler, error)

// Start calls f.
func (f KindFunc) Start(ctx context.Context, s *Session, args Args) (Handler, error) {
	return f(ctx, s, args)
}

// A Handler consumes the datagrams of one active session.
//
// The router calls a Handler from one goroutine at a time, so
// HandleDatagrams and Close never overlap; which goroutine may change from
// call to call. It runs on a worker of the router's Executor, which serves
// many sessions: HandleDatagrams and Close must not block (no waiting on a
// lock, a channel, or a blocking write). A Handler that must block
// implements BlockingHandler.
type Handler interface {
	// HandleDatagrams receives a batch of HTTP Datagram payloads (context
	// ID first, as on the wire after the quarter stream ID) in arrival
	// order. The slices are valid only until HandleDatagrams returns;
	// after that the router hands them to Options.Release.
	HandleDatagrams(dgrams [][]byte)
	// Close is called exactly once when the session ends, with the
	// reason: ErrUnregistered, ErrStreamReset, ErrRouterClosed,
	// ErrCancelled, or the error given to Session.CloseWithError.
	Close(reason error)
}

// A BlockingHandler is a Handler that may block in HandleDatagrams or Close.
// When Blocking reports true (it is asked once, when the session becomes
// active), the router runs the session on a goroutine of its own rather
// than on an executor worker, as it ran every session before the executor:
// a blocked handler then delays only its own session, at the cost of a
// goroutine wake-up per batch.
type BlockingHandler interface {
	Handler
	Blocking() bool
}

// Args says what session to start.
type Args struct {
	// Protocol is the request's :protocol ("connect-udp", "connect-ip", ...).
	// Empty selects the registry's default kind.
	Protocol string
	// Value carries the kind-specific request: a resolved target, the
	// *http.Request, anything the Kind understands.
	Value any
}

// A Registry maps protocols to session kinds. It is safe for concurrent use;
// a router reads it once per StartSession.
type Registry struct {
	mu       sync.RWMutex
	kinds    map[string]Kind
	fallback string
}

// NewRegistry returns an empty registry whose default protocol is
// "connect-udp".
func NewRegistry() *Registry {
	return &Registry{kinds: make(map[string]Kind), fallback: ProtocolConnectUDP}
}

// Protocols masqroute knows by name.
const (
	ProtocolConnectUDP = "connect-udp"
	ProtocolConnectIP  = "connect-ip"
)

// Register makes k the kind for protocol, replacing any earlier one.
func (r *Registry) Register(protocol string, k Kind) {
	if k == nil {
		panic("engine: Registry.Register with nil Kind")
	}
	r.mu.Lock()
	r.kinds[protocol] = k
	r.mu.Unlock()
}

// SetDefault names the protocol an empty Args.Protocol selects.
func (r *Registry) SetDefault(protocol string) {
	r.mu.Lock()
	r.fallback = protocol
	r.mu.Unlock()
}

// Select returns the kind for args, the Go form of the seed's
// session_module/1. An unknown protocol yields ErrUnknownKind.
func (r *Registry) Select(args Args) (Kind, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p := args.Protocol
	if p == "" {
		p = r.fallback
	}
	k, ok := r.kinds[p]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, p)
	}
	return k, nil
}

// All yields every registered protocol and its kind, in no particular order.
// It iterates over a snapshot taken when All is called, so the registry may
// change meanwhile; the default protocol is yielded only if a kind is
// registered for it.
func (r *Registry) All() iter.Seq2[string, Kind] {
	r.mu.RLock()
	kinds := maps.Clone(r.kinds)
	r.mu.RUnlock()
	return maps.All(kinds)
}

// A DatagramSender sends one HTTP/3 Datagram (quarter stream ID first) to the
// peer. *quic.Conn satisfies it: it copies b, so b may be reused at once.
type DatagramSender interface {
	SendDatagram(b []byte) error
}
