package shardmap

import "math/bits"

const (
	defaultShards = 8
	maxShards     = 1 << 16

	// minTableSlots is the smallest table a shard ever has: 8 slots, 128 B.
	minTableSlots = 8
	// maxCapacityHint bounds WithCapacity so that sizing cannot overflow.
	maxCapacityHint = 1 << 40
)

// An Option configures a Map in New.
type Option func(*config)

type config struct {
	shards   int
	hash     func(uint64) uint64
	capacity int
}

// WithShards sets the number of shards. n is rounded up to a power of two;
// n < 1 is treated as 1 and n > 65536 as 65536. The default is 8.
//
// More shards spread concurrent writers over more mutexes; they do not make
// Load faster. Each shard costs 32 B in an empty map (an 8-byte table
// pointer and 24 bytes of writer state), so a map per connection should keep
// the default or use fewer.
func WithShards(n int) Option {
	return func(c *config) { c.shards = n }
}

// WithHash replaces the default hash (the splitmix64 finalizer). The shard is
// taken from the high bits of h(key) and the home slot from the low bits, so
// h must mix into both ends. It exists for tests that need a deliberately bad
// hash; a nil h restores the default. h must be a pure function: the same key
// must always hash to the same value.
func WithHash(h func(uint64) uint64) Option {
	return func(c *config) { c.hash = h }
}

// WithCapacity presizes the map for about n entries: every shard's table
// starts (lazily, on the shard's first write) large enough to hold its share
// of n without growing, and never shrinks below that size. n <= 0 means no
// hint.
func WithCapacity(n int) Option {
	return func(c *config) { c.capacity = n }
}

// shardCount returns n rounded up to a power of two within [1, maxShards].
func shardCount(n int) int {
	switch {
	case n < 1:
		return 1
	case n > maxShards:
		return maxShards
	}
	return 1 << bits.Len(uint(n-1))
}

// minSlotsFor returns the smallest table size a shard may have when the map
// is presized for capacity entries over shards shards.
func minSlotsFor(capacity, shards int) int {
	if capacity <= 0 {
		return minTableSlots
	}
	capacity = min(capacity, maxCapacityHint)
	perShard := (capacity + shards - 1) / shards
	return slotsFor(minTableSlots, perShard)
}

// slotsFor returns the table size for live entries: the smallest power of
// two that is at least minSlots and at least 2*live, so that a fresh table is
// at most half full.
func slotsFor(minSlots, live int) int {
	n := minSlots
	for n < 2*live {
		n <<= 1
	}
	return n
}
