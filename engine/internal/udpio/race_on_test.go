//go:build race

package udpio

// raceEnabled: under the race detector sync.Pool drops a share of Puts on
// purpose, so allocation counts that involve a Pool are not zero there.
const raceEnabled = true
