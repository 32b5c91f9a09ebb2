package proxy

import (
	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/udpio"
)

// DataPathStats count the work the data path does per datagram: goroutine
// wake-ups, system calls and batch sizes, hop by hop. Timings are noisy on
// a shared machine; these counts are not. Divide them by datagrams carried
// (Stats.Router.Dispatched, Stats.ToTarget) for per-datagram figures, or
// one by another for batch sizes (TargetWriteDatagrams/TargetWriteSyscalls).
//
// The socket and poller counters (Target*, GSO*, Poller*) are the
// process's, kept by the data path's socket layer for every proxy in the
// process; a Proxy reports them from the moment New made it. In a process
// with one proxy, as the daemon is, they are that proxy's. They count the
// Linux data path and stay at 0 elsewhere.
type DataPathStats struct {
	// Executor workers: they run every tunnel's client → target batches.
	Workers         int    // worker goroutines (0 until the first connection)
	WorkerWakeups   uint64 // a parked worker woken by a producer: one goroutine wake-up each
	WorkerTurns     uint64 // session turns run (one batch of up to engine.DefaultBatchSize each)
	WorkerDatagrams uint64 // datagrams handed to session handlers on workers
	// WorkerPlaced counts the tunnels placed on each worker, by worker
	// index (round-robin, or the worker WithWorker chose); zeros for the
	// workers to come before the first connection.
	WorkerPlaced []uint64
	// QueueDelay: sampled time from Dispatch to the worker turn that hands
	// a datagram to its tunnel (engine.QueueDelay; one in max(64, 2 ×
	// ring size) datagrams per tunnel).
	QueueDelay engine.QueueDelay

	// Toward targets (sendmmsg, sendmsg with UDP GSO).
	TargetWriteSyscalls  uint64 // system calls made, failed ones included
	TargetWriteDatagrams uint64 // datagrams the kernel accepted
	GSOSends             uint64 // sends carrying two or more datagrams as one UDP_SEGMENT message
	GSODatagrams         uint64 // datagrams in those sends
	GSORefusals          uint64 // GSO sends the kernel refused (sent again without GSO; none lost)
	GSODisabled          bool   // GSO is off for every socket: the kernel lacks it or refused it for good

	// From targets (recvmmsg).
	TargetReadSyscalls  uint64 // system calls made, empty ones included
	TargetReadDatagrams uint64 // datagrams the kernel returned
	TargetReadEmpty     uint64 // reads that found nothing (EAGAIN): a system call spent to learn that

	// Pollers: goroutines that wait for readiness of many target sockets.
	PollerWakeups  uint64 // wake-ups after parking in Go's netpoller
	PollerEvents   uint64 // readiness events collected (events per wake-up = PollerEvents/PollerWakeups)
	PollerTurns    uint64 // socket turns run (one read batch each)
	PollerRequeues uint64 // turns that filled their batch and were queued again

	// The per-connection outbound sender: replies toward the client.
	SenderWakeups   uint64 // a parked sender woken by a reply
	SenderBatches   uint64 // batches drained (one wake-up serves one or more)
	SenderDatagrams uint64 // datagrams in those batches
	SenderQueueFull uint64 // replies dropped, the connection's outbound ring full

	// Toward clients, where the QUIC socket is a BatchedQUICConn: quic-go's
	// packets queued, and the flusher's sendmmsg calls.
	ClientWriteSyscalls uint64 // sendmmsg calls, failed ones included
	ClientFlushes       uint64 // queues flushed (one flusher wake-up each, at most)
	ClientPackets       uint64 // QUIC packets queued
	ClientGSOSends      uint64 // messages carrying two or more packets as one UDP GSO message
	ClientGSOPackets    uint64 // packets in those messages
	ClientSendDropped   uint64 // packets the kernel refused: to quic-go, lost on the path
	ClientGSORefusals   uint64 // GSO sends refused (the socket then sends without GSO)
}

// dataPathStats fills the executor and socket sections of a snapshot; Stats
// fills the sender's, which need the connections.
func (p *Proxy) dataPathStats(exec *engine.Executor) DataPathStats {
	var d DataPathStats
	if exec != nil {
		es := exec.Stats()
		d.Workers = es.Workers
		d.WorkerWakeups = es.Wakeups
		d.WorkerTurns = es.Turns
		d.WorkerDatagrams = es.Datagrams
		d.WorkerPlaced = es.Placed
		d.QueueDelay = es.QueueDelay
	} else {
		n := p.cfg.Workers
		if n <= 0 {
			n = engine.DefaultWorkers()
		}
		d.WorkerPlaced = make([]uint64, n)
	}
	u, b := udpio.Stats(), &p.udpBase
	d.TargetWriteSyscalls = u.WriteSyscalls - b.WriteSyscalls
	d.TargetWriteDatagrams = u.WriteDatagrams - b.WriteDatagrams
	d.GSOSends = u.GSOSends - b.GSOSends
	d.GSODatagrams = u.GSODatagrams - b.GSODatagrams
	d.GSORefusals = u.GSORefusals - b.GSORefusals
	d.GSODisabled = u.GSODisabled
	d.TargetReadSyscalls = u.ReadSyscalls - b.ReadSyscalls
	d.TargetReadDatagrams = u.ReadDatagrams - b.ReadDatagrams
	d.TargetReadEmpty = u.ReadEmpty - b.ReadEmpty
	d.PollerWakeups = u.PollerWakes - b.PollerWakes
	d.PollerEvents = u.PollerEvents - b.PollerEvents
	d.PollerTurns = u.PollerTurns - b.PollerTurns
	d.PollerRequeues = u.PollerRequeues - b.PollerRequeues
	d.ClientWriteSyscalls = u.ClientSyscalls - b.ClientSyscalls
	d.ClientFlushes = u.ClientFlushes - b.ClientFlushes
	d.ClientPackets = u.ClientPackets - b.ClientPackets
	d.ClientGSOSends = u.ClientGSOSends - b.ClientGSOSends
	d.ClientGSOPackets = u.ClientGSOPackets - b.ClientGSOPackets
	d.ClientSendDropped = u.ClientDropped - b.ClientDropped
	d.ClientGSORefusals = u.ClientGSORefusals - b.ClientGSORefusals
	return d
}
