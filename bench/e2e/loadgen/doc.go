// Package loadgen drives UDP datagram load through a tunnel transport to an
// echo target and measures what comes back: throughput, loss (in total and
// hop by hop, where counters along the path are available) and round-trip
// latency in an HdrHistogram.
//
// It is the engine under cmd/masqload and the end-to-end benchmark in
// bench/e2e. A Transport opens the tunnels (masqroute's CONNECT-UDP client,
// or raw QUIC datagrams to an echo server); Run drives them for a warm-up
// and a measured interval, then waits a drain period for stragglers.
//
// The pipeline of one run:
//
//	senders (parallel)    closed loop: one goroutine per tunnel keeps Window
//	                      datagrams in flight; open loop: one pacer per
//	                      connection sends its share of Rate, round robin
//	                      over its tunnels
//	  → Flows.Send        the transport (client QUIC connection, proxy, target)
//	  → readers (parallel) one goroutine per Flows reader (a tunnel, or a raw
//	                      QUIC connection): parse the header, count, record
//	                      the round trip
//
// Every datagram carries a 24-byte header (header.go): the run's tag, the
// tunnel index, a sequence number and the send time. A reply counts when its
// send time lies in the measured interval, so datagrams sent during the
// warm-up do not inflate the measured window and datagrams sent at its end
// still count if they come back within the drain period.
//
// Open-loop datagrams are stamped with the time they were due, not the time
// the pacer got to them, so a pacer that falls behind shows up as latency
// rather than hiding it (coordinated omission); Result.SendLag says how far
// behind it fell.
//
// Every goroutine Run starts has ended when it returns.
package loadgen
