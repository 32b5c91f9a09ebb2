package loadgen

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/masqroute/masqroute/engine/proxy"
)

// The proxy's data-path counts: how much work each datagram cost it in
// goroutine wake-ups, system calls and batches. A masqroute proxy exports
// them as masqroute_datapath_* counters; probes read them into
// Counters.DataPath under short keys, NAME or NAME.LABEL
// (masqroute_datapath_wakeups_total{goroutine="worker"} is
// "wakeups.worker"), and Run reports them per datagram in Result.DataPath.

// DataPath is a run's data-path counts, per datagram the proxy took from
// clients (one per round trip).
type DataPath struct {
	// Datagrams is the divisor: datagrams the proxy's routers took from
	// clients over the span the counters cover ("proxy: router
	// dispatched").
	Datagrams uint64 `json:"datagrams"`
	// WakesPerDgram counts data-path goroutines (executor workers,
	// outbound senders, pollers) woken after parking; WakesBy splits it.
	WakesPerDgram float64            `json:"wakes_per_dgram"`
	WakesBy       map[string]float64 `json:"wakes_per_dgram_by,omitempty"`
	// System calls on target sockets, per datagram.
	SyscallsToTargetPerDgram   float64 `json:"syscalls_to_target_per_dgram"`
	SyscallsFromTargetPerDgram float64 `json:"syscalls_from_target_per_dgram"`
	EmptyReadsPerDgram         float64 `json:"empty_reads_per_dgram"`
	// Batch is the mean batch size per hop, where the hop did anything:
	// to_target and from_target (datagrams per system call), worker
	// (datagrams per session turn), sender (datagrams per batch to a
	// client).
	Batch map[string]float64 `json:"batch,omitempty"`
	// Counts are the counters' growth over the span, by key.
	Counts map[string]uint64 `json:"counts"`
}

// Keys of Counters.DataPath.
const (
	dpSyscallsTo   = "syscalls.to_target"
	dpSyscallsFrom = "syscalls.from_target"
	dpDgramsTo     = "datagrams.to_target"
	dpDgramsFrom   = "datagrams.from_target"
	dpEmptyReads   = "empty_reads"
)

// dataPathKey is the Counters.DataPath key of a masqroute_datapath_*
// counter series, or "" for any other series.
func dataPathKey(name string, labels map[string]string) string {
	base, ok := strings.CutPrefix(name, "masqroute_datapath_")
	if !ok || !strings.HasSuffix(base, "_total") || base == "worker_tunnels_placed_total" {
		return "" // gauges (workers, gso_disabled) and tunnel placements say nothing per datagram
	}
	key := strings.TrimSuffix(base, "_total")
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		key += "." + labels[k]
	}
	return key
}

// dataPathCounts are a proxy's data-path counters under the keys the
// Prometheus probe gives their series.
func dataPathCounts(d proxy.DataPathStats) map[string]uint64 {
	return map[string]uint64{
		"wakeups.worker":           d.WorkerWakeups,
		"wakeups.sender":           d.SenderWakeups,
		"wakeups.poller":           d.PollerWakeups,
		"batches.worker":           d.WorkerTurns,
		"batches.sender":           d.SenderBatches,
		"batches.poller":           d.PollerTurns,
		"batched_datagrams.worker": d.WorkerDatagrams,
		"batched_datagrams.sender": d.SenderDatagrams,
		"sender_queue_full":        d.SenderQueueFull,
		"poller_events":            d.PollerEvents,
		"poller_requeues":          d.PollerRequeues,
		dpSyscallsTo:               d.TargetWriteSyscalls,
		dpSyscallsFrom:             d.TargetReadSyscalls,
		dpDgramsTo:                 d.TargetWriteDatagrams,
		dpDgramsFrom:               d.TargetReadDatagrams,
		dpEmptyReads:               d.TargetReadEmpty,
		"gso_sends":                d.GSOSends,
		"gso_datagrams":            d.GSODatagrams,
		"gso_refusals":             d.GSORefusals,
	}
}

// newDataPath computes the per-datagram figures from the counters' growth
// over the span and the proxy's datagrams from clients; nil when there are
// no data-path counters (not a masqroute proxy, or no probe of it) or no
// datagram went through.
func newDataPath(counts map[string]uint64, datagrams uint64) *DataPath {
	if len(counts) == 0 || datagrams == 0 {
		return nil
	}
	per := func(n uint64) float64 { return float64(n) / float64(datagrams) }
	d := &DataPath{Datagrams: datagrams, Counts: counts, WakesBy: map[string]float64{}, Batch: map[string]float64{}}
	for k, v := range counts {
		if who, ok := strings.CutPrefix(k, "wakeups."); ok {
			d.WakesPerDgram += per(v)
			d.WakesBy[who] = per(v)
		}
	}
	d.SyscallsToTargetPerDgram = per(counts[dpSyscallsTo])
	d.SyscallsFromTargetPerDgram = per(counts[dpSyscallsFrom])
	d.EmptyReadsPerDgram = per(counts[dpEmptyReads])
	for hop, ratio := range map[string][2]string{
		"to_target":   {dpDgramsTo, dpSyscallsTo},
		"from_target": {dpDgramsFrom, dpSyscallsFrom},
		"worker":      {"batched_datagrams.worker", "batches.worker"},
		"sender":      {"batched_datagrams.sender", "batches.sender"},
	} {
		if n := counts[ratio[1]]; n > 0 {
			d.Batch[hop] = float64(counts[ratio[0]]) / float64(n)
		}
	}
	return d
}

// TransportPacketsKey is the data-path count of the QUIC packets the
// connections of a multi-transport server's transport t received.
func TransportPacketsKey(t int) string { return "transport.packets_in." + strconv.Itoa(t) }

// TransportShares is each transport's share of the QUIC packets a
// multi-transport server received, in %, by transport; nil without
// TransportPacketsKey counts.
func (d *DataPath) TransportShares() []float64 {
	if d == nil {
		return nil
	}
	var counts []uint64
	var all uint64
	for t := 0; ; t++ {
		n, ok := d.Counts[TransportPacketsKey(t)]
		if !ok {
			break
		}
		counts = append(counts, n)
		all += n
	}
	if all == 0 {
		return nil
	}
	shares := make([]float64, len(counts))
	for t, n := range counts {
		shares[t] = 100 * float64(n) / float64(all)
	}
	return shares
}

// writeText writes d for people, under WriteText's path and drops.
func (d *DataPath) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "data path (per datagram from clients, %s of them):\n", grouped(d.Datagrams))
	var by []string
	for _, who := range slices.Sorted(maps.Keys(d.WakesBy)) {
		by = append(by, fmt.Sprintf("%s %.3f", who, d.WakesBy[who]))
	}
	fmt.Fprintf(b, "  %-22s %8.3f  (%s)\n", "wakes/dgram", d.WakesPerDgram, strings.Join(by, ", "))
	fmt.Fprintf(b, "  %-22s %8.3f  %s\n", "syscalls to targets", d.SyscallsToTargetPerDgram, d.batchText("to_target", "per call"))
	fmt.Fprintf(b, "  %-22s %8.3f  %s, empty reads %.3f\n", "syscalls from targets", d.SyscallsFromTargetPerDgram,
		d.batchText("from_target", "per call"), d.EmptyReadsPerDgram)
	fmt.Fprintf(b, "  %-22s %8s  %s\n", "worker turns", "", d.batchText("worker", "per turn"))
	fmt.Fprintf(b, "  %-22s %8s  %s\n", "sender batches", "", d.batchText("sender", "per batch"))
	if shares := d.TransportShares(); shares != nil {
		parts := make([]string, len(shares))
		for t, sh := range shares {
			parts[t] = fmt.Sprintf("%d: %.1f %%", t, sh)
		}
		fmt.Fprintf(b, "  %-22s %8s  %s of QUIC packets in\n", "transports", "", strings.Join(parts, ", "))
	}
}

func (d *DataPath) batchText(hop, unit string) string {
	v, ok := d.Batch[hop]
	if !ok {
		return "batch -"
	}
	return fmt.Sprintf("batch %.2f dgrams %s", v, unit)
}
