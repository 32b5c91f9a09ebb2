package udpio

// Package-wide counters of the data path, read with Stats.
//
// Invariants:
//   - Every counter only grows; Stats reads each one on its own, so a
//     snapshot taken under load is not one instant (WriteDatagrams may
//     already count a call whose WriteSyscalls increment Stats missed).
//     Ratios over an interval (datagrams per system call) are what the
//     counters are for, and those are exact once traffic stops.
//   - The counters count the Linux data path; off Linux they stay at 0.
//   - Counters are added once per system call or per poller turn, never
//     per datagram: a batch of 32 costs one atomic add per counter.
//   - Each group is written by one side of the data path (the writers,
//     the readers, the poller goroutines) and sits on its own cache line,
//     so the sides do not bounce a line between cores. Within a group the
//     goroutines of that side still share the line: on a many-core host
//     under load that is one contended add per system call, a cost next
//     to the system call itself.

import "sync/atomic"

// Counters is a snapshot of the package's counters since the process
// started. All fields are totals over every Conn and every Poller.
type Counters struct {
	// Toward targets (WriteBatch, Write).

	// WriteSyscalls counts sendmmsg and sendmsg calls made, failed ones
	// included.
	WriteSyscalls uint64
	// WriteDatagrams counts datagrams the kernel accepted.
	WriteDatagrams uint64
	// GSOSends counts messages sent with a UDP_SEGMENT control message,
	// each carrying two or more datagrams (GSODatagrams of them in all).
	GSOSends     uint64
	GSODatagrams uint64
	// GSORefusals counts GSO sends the kernel refused; each was sent
	// again without GSO, so no datagram was lost to it.
	GSORefusals uint64
	// GSODisabled is true once GSO is off for every Conn: the kernel
	// lacks UDP_SEGMENT, or refused a GSO send in a way that holds for
	// every socket (see gsoRefused).
	GSODisabled bool

	// From targets (ReadBatch, TryReadBatch).

	// ReadSyscalls counts recvmmsg and recvmsg calls made, the ones that
	// found nothing included.
	ReadSyscalls uint64
	// ReadDatagrams counts datagrams the kernel returned, the ones then
	// dropped as truncated included.
	ReadDatagrams uint64
	// ReadEmpty counts reads that returned EAGAIN with nothing: the price
	// of learning that a socket is empty. ReadBatch pays one each time it
	// waits; TryReadBatch under a Poller pays one only when an edge raced
	// with a read that had already taken its datagram.
	ReadEmpty uint64

	// Pollers.

	// PollerWakes counts the times a Poller's goroutine woke after parking
	// in Go's netpoller; PollerEvents counts the readiness events it
	// collected (events per wake = PollerEvents / PollerWakes).
	PollerWakes  uint64
	PollerEvents uint64
	// PollerWaits counts the pollers' epoll_wait calls (all non-blocking),
	// the ones that found nothing included.
	PollerWaits uint64
	// PollerTurns counts handler calls; PollerRequeues counts the turns
	// after which a handler asked to be called again (it filled its batch).
	PollerTurns    uint64
	PollerRequeues uint64

	// Toward clients (QUICConn: quic-go's packets, queued and flushed).

	// ClientSyscalls counts sendmmsg calls made, failed ones included.
	ClientSyscalls uint64
	// ClientFlushes counts the queues the flushers took (one goroutine
	// wake-up each, at most); ClientPackets the packets queued.
	ClientFlushes uint64
	ClientPackets uint64
	// ClientGSOSends counts messages carrying two or more packets as one
	// UDP_SEGMENT message, ClientGSOPackets the packets in them.
	ClientGSOSends   uint64
	ClientGSOPackets uint64
	// ClientDropped counts packets the kernel refused (or that were queued
	// when the socket closed): to quic-go, packets lost on the path.
	ClientDropped uint64
	// ClientGSORefusals counts GSO sends refused; the socket then sends
	// without GSO.
	ClientGSORefusals uint64
}

// Stats returns a snapshot of the package's counters. It allocates
// nothing and takes no lock.
func Stats() Counters {
	return Counters{
		WriteSyscalls:  stats.wr.syscalls.Load(),
		WriteDatagrams: stats.wr.datagrams.Load(),
		GSOSends:       stats.wr.gsoSends.Load(),
		GSODatagrams:   stats.wr.gsoDatagrams.Load(),
		GSORefusals:    stats.wr.gsoRefusals.Load(),
		GSODisabled:    gsoDisabled.Load(),
		ReadSyscalls:   stats.rd.syscalls.Load(),
		ReadDatagrams:  stats.rd.datagrams.Load(),
		ReadEmpty:      stats.rd.empty.Load(),
		PollerWakes:    stats.poll.wakes.Load(),
		PollerEvents:   stats.poll.events.Load(),
		PollerWaits:    stats.poll.waits.Load(),
		PollerTurns:    stats.poll.turns.Load(),
		PollerRequeues: stats.poll.requeues.Load(),

		ClientSyscalls:    stats.cl.syscalls.Load(),
		ClientFlushes:     stats.cl.flushes.Load(),
		ClientPackets:     stats.cl.packets.Load(),
		ClientGSOSends:    stats.cl.gsoSends.Load(),
		ClientGSOPackets:  stats.cl.gsoPackets.Load(),
		ClientDropped:     stats.cl.dropped.Load(),
		ClientGSORefusals: stats.cl.gsoRefusals.Load(),
	}
}

// cacheLinePad keeps the groups of counters on separate cache lines.
type cacheLinePad struct{ _ [64]byte }

// stats holds the counters. Adds are plain atomic adds: a counter orders
// nothing else, and readers want totals, not happens-before.
var stats struct {
	_  cacheLinePad
	wr struct {
		syscalls, datagrams, gsoSends, gsoDatagrams, gsoRefusals atomic.Uint64
	}
	_  cacheLinePad
	rd struct {
		syscalls, datagrams, empty atomic.Uint64
	}
	_    cacheLinePad
	poll struct {
		wakes, events, waits, turns, requeues atomic.Uint64
	}
	_  cacheLinePad
	cl struct {
		syscalls, flushes, packets, gsoSends, gsoPackets, dropped, gsoRefusals atomic.Uint64
	}
	_ cacheLinePad
}

// gsoDisabled is set when GSO is off for every Conn (gso_linux.go); it
// is never cleared. Off Linux there is no GSO, and conn_default.go sets
// it at init.
var gsoDisabled atomic.Bool
