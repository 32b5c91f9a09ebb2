// Package shardmap provides Map, a concurrent hash map from uint64 keys to
// *V values for read-mostly lookups on a hot path, such as a datagram router
// finding the session for an HTTP/3 stream ID on every packet.
//
// # Reads and writes
//
// Load is wait-free: no locks, no retries, at most one table's worth of
// probes, and no allocation. Any number of goroutines may Load at once,
// concurrently with writes.
//
// Store, LoadOrStore, Delete, CompareAndSwap and CompareAndDelete are safe
// from any number of goroutines. The map is split into shards (8 by
// default, see WithShards); writers of one shard serialize on that shard's
// mutex, writers of different shards do not contend, and readers never take
// a mutex. The layout favours a single writer (one control-plane goroutine):
// writer state is not padded against false sharing between shards.
//
// A write that stores v synchronizes before any Load that returns v: what
// the writer did before the write (filling in *v, say) is visible to the
// reader that gets v back. Once v is stored the map and its readers share
// it; mutating *v afterwards needs synchronization of its own.
//
// Values are compared by pointer identity in CompareAndSwap and
// CompareAndDelete. nil is never stored: Store and LoadOrStore panic on a
// nil value, and Load's nil result means "absent". Key ReservedKey
// (^uint64(0)) cannot be stored either.
//
// Len and Range take no locks; while writes are in progress they are weakly
// consistent (see their docs), exact when the map is quiescent.
//
// # Algorithm
//
// Each shard is one open-addressing table with linear probing. A slot, once
// claimed for a key, belongs to that key for the life of the table: deletes
// leave tombstones, which only a rebuild clears. Tables grow, rebuild at the
// same size or shrink by being copied into a new table that is published
// with one atomic store; readers on the old table keep a consistent view.
// The invariants and the argument for linearizability are at the top of
// map.go.
//
// # Memory
//
// Each slot is 16 bytes. Tables are rebuilt when claimed slots (live plus
// tombstones) would pass 3/4 of the table, to a size where live entries
// fill between 1/4 and 1/2 of it (above the minimum of 8 slots), and
// shrink when live entries fall below 1/8. So a table costs 16/0.75 = 21 B to 16/0.375 = 43 B per entry while
// it grows, and at most 128 B per entry just before it shrinks. Measured
// (TestMemoryPerEntry, amd64, all entries sharing one value): 26-42 B per
// entry for maps of 1k to 1M entries filled by Store; 76 B per remaining
// entry after a burst of 100k entries drained to 1k. The *V values are the
// caller's and not counted.
//
// Shard tables are allocated on a shard's first write, so an empty map is
// three small allocations: 336 B with the default 8 shards, 112 B with
// WithShards(1) (TestMemoryEmptyMap). A proxy holding 100k per-connection
// maps pays 34 MB for them empty at the default, 11 MB with one shard.
package shardmap
