package loadgen

import "context"

// A Transport opens the tunnels a run drives.
type Transport interface {
	// Name identifies the transport in results ("masque", "rawquic").
	Name() string
	// Open opens tunnels flows to target ("host:port", an echo target),
	// spread over conns connections. It must not leave anything open
	// when it fails.
	Open(ctx context.Context, target string, tunnels, conns int) (Flows, error)
}

// Flows are a run's open tunnels.
type Flows interface {
	// Send sends b as one datagram on tunnel i (0 ≤ i < the tunnels
	// asked for). It must not keep b. Send is called by one goroutine
	// per tunnel at a time, but for different tunnels concurrently; it
	// may block while the transport's send queue is full.
	Send(i int, b []byte) error
	// Readers are the receive loops: Run calls each on its own
	// goroutine until it returns an error. Each reads one datagram into
	// buf; a longer one may be cut short. After Close every reader
	// returns an error.
	Readers() []Reader
	// Probe reads the client side's counters; nil if it has none.
	Probe() Probe
	// Close closes every tunnel and connection.
	Close() error
}

// A Reader reads the next datagram of a receive loop into buf.
type Reader func(buf []byte) (int, error)
