//go:build !race

package shardmap

const raceEnabled = false
