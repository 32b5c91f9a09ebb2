package shardmap

// mix64 is the default hash: the splitmix64 finalizer (Stafford's "Mix13").
//
// It is a bijection on uint64, so distinct keys never share a full 64-bit
// hash, and every output bit depends on every input bit, so both the shard
// (taken from the high bits) and the home slot (taken from the low bits) are
// well spread even for HTTP/3 stream IDs, which are all multiples of 4.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
