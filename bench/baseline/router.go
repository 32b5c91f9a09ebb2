package baseline

import (
	"errors"
	"fmt"
	"sync"
)

// A Consumer receives the datagrams of one session. Each implementation
// calls it from the session's own goroutine, one batch at a time; the slices
// are valid until HandleDatagrams returns, after which the router releases
// them. Several sessions may share one Consumer, so an implementation of
// Consumer shared that way must be safe for concurrent use.
type Consumer interface {
	HandleDatagrams(batch [][]byte)
}

// A Router routes datagrams to sessions keyed by stream ID. Add, Remove and
// Close are the control plane; Dispatch is the data plane and may be called
// by any number of goroutines at once, concurrently with the control plane.
type Router interface {
	// Add starts a session for streamID whose datagrams go to c. It
	// returns ErrExists if streamID already has one and ErrClosed after
	// Close.
	Add(streamID uint64, c Consumer) error
	// Remove ends the session of streamID; later datagrams for it are
	// dropped. Datagrams still queued are discarded (counted as drops).
	// An unknown stream is not an error.
	Remove(streamID uint64) error
	// Dispatch hands d to the session of streamID and reports whether the
	// router accepted it; false means it was dropped (and counted). The
	// router owns d from the call on. For singlerouter true means "in the
	// router's inbox": the drop, if any, happens later and shows only in
	// Dropped.
	Dispatch(streamID uint64, d []byte) bool
	// Dropped is the number of datagrams dropped so far, for any reason.
	Dropped() uint64
	// Wakeups is the number of times a goroutine on the datagram path
	// (a session's consumer, a router goroutine, an executor worker)
	// parked for want of work so far: each park costs a wake-up.
	Wakeups() uint64
	// Close ends every session and returns once every goroutine the
	// router started has ended. Datagrams still queued are discarded.
	Close()
}

// Errors of the control plane.
var (
	ErrExists = errors.New("baseline: stream already has a session")
	ErrClosed = errors.New("baseline: router closed")
)

// Defaults for Config fields left zero.
const (
	DefaultQueueCap  = 128
	DefaultBatchSize = 32
)

// Config is what every implementation is built with, so that their queues
// and batches are the same size.
type Config struct {
	// QueueCap is each session's queue capacity in datagrams. The engine
	// rounds it up to a power of two; use one.
	QueueCap int
	// BatchSize is the most datagrams a Consumer receives per call.
	BatchSize int
	// Release receives every datagram the router is done with, delivered
	// or dropped. Nil discards them.
	Release func([]byte)
}

func (c Config) withDefaults() Config {
	if c.QueueCap <= 0 {
		c.QueueCap = DefaultQueueCap
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Release == nil {
		c.Release = func([]byte) {}
	}
	return c
}

// An Impl names a Router implementation and builds one.
type Impl struct {
	Name string
	New  func(Config) Router
}

// Impls lists every implementation, baselines first and the engine last, in
// the order benchmarks and reports show them.
var Impls = []Impl{
	{"singlerouter", NewSingleRouter},
	{"mutexmap", NewMutexMap},
	{"syncmap", NewSyncMap},
	{"xsync", NewXsync},
	{"engine", NewEngine},
}

// New builds the implementation called name.
func New(name string, cfg Config) (Router, error) {
	for _, im := range Impls {
		if im.Name == name {
			return im.New(cfg), nil
		}
	}
	return nil, fmt.Errorf("baseline: no implementation %q", name)
}

// closeOnce is the idempotent-close helper the baselines share.
type closeOnce struct {
	once sync.Once
	ch   chan struct{}
}

func newCloseOnce() closeOnce { return closeOnce{ch: make(chan struct{})} }

func (c *closeOnce) close() { c.once.Do(func() { close(c.ch) }) }
