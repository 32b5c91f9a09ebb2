// Package bench holds masqroute's micro-benchmarks: engine.Router against
// the four baseline designs of package bench/baseline, all driven through
// the same interface (baseline.Router) by the same harness. It has no
// non-test code besides this comment; the harness is in the _test.go files.
//
// # Benchmarks
//
//	BenchmarkDispatch/impl=<name>/sessions=<n>/churn=<0|1>
//	BenchmarkLatency/impl=<name>/churn=<0|1>
//	BenchmarkDispatchBurst/impl=<name>/sessions=<n>   (supplementary)
//
// Run with -cpu 1,2,... : b.RunParallel starts GOMAXPROCS dispatcher
// goroutines that share one router, so the -N suffix of a result is the
// number of dispatchers (connection readers). For example:
//
//	go test -run '^$' -bench 'Dispatch|Latency' -benchtime 200ms -count 5 -cpu 1,2 ./bench/
//
// sessions is 1, 1000, 100000 and 1000000 (the last skipped under -short).
// Every session has its own consumer goroutine, as in the proxy, whatever the
// implementation.
//
// # The workload
//
//   - Each dispatcher picks the next session with a per-goroutine xorshift
//     over a table of live stream IDs (one slot per session), so the order
//     is pseudo-random, differs between dispatchers and allocates nothing.
//   - Payloads are 1200-byte buffers from a sync.Pool; the router hands each
//     back through Config.Release after its consumer returns, or when it
//     drops it. BenchmarkDispatch does not write the payload (only the
//     buffer's hand-off is measured); BenchmarkLatency writes a timestamp
//     into its first 8 bytes.
//   - A dispatcher calls runtime.Gosched after every 64 dispatches
//     (readBatch), the way a connection reader goes back to its socket after
//     a batch of reads. Without it a dispatcher at GOMAXPROCS=1 runs its
//     whole 10 ms time slice while no consumer can run, and every
//     implementation measures nothing but its drop path. The yield does not
//     depend on what Dispatch returned.
//   - Consumers count what they receive and release it; that is all the work
//     they do.
//   - Queues hold 128 datagrams per session for every implementation, except
//     at 1M sessions, where they hold 8 (1M rings or channels of 128 would
//     take several GB; at 1M sessions and a random walk a queue rarely holds
//     more than one datagram anyway).
//   - churn=1: a background goroutine replaces sessions at about 10,000 per
//     second (10 per millisecond tick, at most 100 per tick when it falls
//     behind) through each implementation's control plane: Add a new stream
//     ID, publish it in the slot table, Remove the old one. The number of
//     live sessions stays constant; dispatchers that picked the old ID just
//     before its removal see a drop. The rate it achieved is reported as
//     churn/s. Its allocations (session creation) fall inside the timed
//     region and show in B/op and allocs/op.
//   - The router and its sessions are built once per (implementation,
//     sessions) and reused across churn values, -cpu values and -count runs;
//     only one such setup is alive at a time. Before each timed run the
//     harness waits until the previous run's datagrams are delivered or
//     dropped.
//
// # What the numbers mean
//
//   - ns/op: wall time per Dispatch call, across all dispatchers (RunParallel
//     divides elapsed time by the total count of calls). A call that drops is
//     a call: a design that drops everything can post a small ns/op, so read
//     it with the next two.
//   - drops/op: datagrams dropped (queue full, unknown or removed stream) per
//     Dispatch call, from the router's own counters. For singlerouter the
//     drops happen in its router goroutine, after Dispatch returned true.
//   - dgrams/s: datagrams handed to consumers per second of the timed
//     region. This is the throughput that counts.
//   - dgrams/batch: datagrams per HandleDatagrams call. Near 1 means every
//     datagram found its consumer parked and cost a goroutine wake-up; that
//     is the case for every implementation once sessions outnumber what a
//     dispatcher sends between two yields (about 1000 sessions and up), and
//     then the wake-up, not the router, is most of ns/op.
//   - gc/s: garbage collections completed per second of the timed region.
//     Churn allocates every new session's queue; at 10,000 sessions a
//     second that drives the collector, whose work and pauses show in the
//     latency tails.
//   - cpus: CPU time the whole process used per second of the timed region
//     (getrusage), at most GOMAXPROCS. Below GOMAXPROCS, Ps sat idle.
//   - other-cpus (Linux): CPU time the rest of the machine used per second
//     of the timed region (/proc/stat busy time, steal included, minus
//     ours; 10 ms ticks, so only for runs of 100 ms and more). Anything
//     well above 0 means another process competed for the cores and the
//     run is suspect.
//   - allocs/op, B/op: everything the process allocated during the timed
//     region, divided by the calls; includes consumers, the churner and the
//     payload pool's misses.
//   - p50-ns, p99-ns, p999-ns (BenchmarkLatency, 1000 sessions): time from
//     just before Dispatch to the moment the consumer's batch starts, per
//     delivered datagram, from an HdrHistogram. Each dispatcher offers a
//     paced 100,000 datagrams/s (yielding while it waits), far below
//     saturation, so this is the hand-off and wake-up path plus scheduling
//     delay, not queueing; ns/op there is set by the pacing.
//
// Reports: bench/cmd/benchreport turns the output into markdown and charts;
// on a shared machine run it with -max-other 0.25 to leave out the runs
// another process disturbed (it says how many). bench/results/ holds the
// raw output and report of the last full run, and its README the findings.
package bench
