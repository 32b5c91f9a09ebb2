//go:build !unix

package udpio

import "time"

// cpuTime is not measured here: cpu-ns/dgram reads 0.
func cpuTime() time.Duration { return 0 }
