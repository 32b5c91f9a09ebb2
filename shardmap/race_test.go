//go:build race

package shardmap

// raceEnabled lets slow tests scale down under the race detector, which
// makes every atomic operation an order of magnitude slower.
const raceEnabled = true
