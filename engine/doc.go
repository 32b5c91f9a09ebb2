// Package engine is masqroute's datagram router. The MASQUE proxy built on it
// is engine/proxy; the client is engine/client.
//
// A Router owns the HTTP Datagrams (RFC 9297) of one HTTP/3 connection and
// routes each to the session of its stream. It re-designs the router of the
// Erlang masque library (masque_server_connection), where one process
// received every datagram and every control message, so routing waited
// behind session start-up and teardown. Here the two are split:
//
//	connection reader ──Dispatch──► shardmap lookup ──TryPush──► session ring ──► session goroutine ──► Handler
//	      (data plane: wait-free, no lock, no allocation, any number of readers)
//
//	StartSession / Register / Unregister / CancelPending / Reset / Close
//	      ──► control-plane goroutine ──► session map writes, state transitions
//
// Stages and their concurrency:
//
//  1. Dispatch (parallel): any number of goroutines, typically one reader per
//     QUIC connection. One lookup in a shardmap.Map and one push into the
//     session's ringbuf.Ring; a full ring drops the datagram and counts it.
//  2. Session goroutine (one per active session, sequential within it): pops
//     batches and calls Handler.HandleDatagrams; parks only when its ring is
//     empty and is woken only on the empty → non-empty edge.
//  3. Control plane (one goroutine per router, sequential): the only writer
//     of the session map. It never runs on the datagram path, and the data
//     path never waits for it.
//
// Session kinds (CONNECT-UDP, CONNECT-IP, an embedder's own) plug in through
// a Registry of Kind values; a Kind's Start runs asynchronously while the
// router keeps routing, and datagrams for the pending stream are held,
// bounded, and handed over in order when it activates.
package engine
