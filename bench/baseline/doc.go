// Package baseline holds the routers that masqroute's micro-benchmarks
// (package bench) compare, all behind one interface, Router:
//
//   - singlerouter: the seed's design (Erlang masque_server_connection). One
//     goroutine owns a plain map and receives datagrams and control messages
//     over one channel; it forwards each datagram into the session's mailbox.
//   - mutexmap: quic-go http3's design. A map under a sync.Mutex; each
//     session has a bounded queue under a mutex of its own and a 1-buffered
//     channel that signals its consumer on the empty → non-empty edge.
//   - syncmap: a sync.Map lookup and a buffered channel per session.
//   - xsync: an xsync.MapOf lookup (github.com/puzpuzpuz/xsync/v3) and a
//     buffered channel per session.
//   - engine: masqroute's engine.Router through Register, Unregister and
//     Dispatch.
//
// # Common rules
//
// Every implementation gives each session a queue of Config.QueueCap
// datagrams and one goroutine that drains it in batches of up to
// Config.BatchSize, calls the session's Consumer, and parks only when the
// queue is empty. Every queue is bounded and drops the newest datagram when
// full; nothing on the dispatch path blocks except where the design itself
// blocks (singlerouter's one inbox, whose send blocks when the router
// goroutine is behind, as a mailbox of the seed's single process would grow).
//
// The router owns a datagram from the Dispatch call on: it hands it to
// Config.Release after the Consumer returns, or when it drops it (queue full,
// unknown stream, session removed, router closed). Every drop is counted in
// Router.Dropped. Datagrams still queued when a session is removed are
// discarded and counted as drops, as the engine does.
//
// One known gap, kept because it belongs to the designs: in syncmap and xsync
// a dispatcher that loaded a session just before its removal can send into
// its channel after the consumer has drained it and gone; that datagram is
// neither delivered, counted nor released (the garbage collector takes it).
// A mutex (mutexmap), a single owner (singlerouter) or the engine's ring
// close-and-drain protocol is what it takes to close that gap.
package baseline
