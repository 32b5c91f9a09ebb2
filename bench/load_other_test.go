//go:build !linux

package bench

import "time"

// machineBusy is not measured here; -1 leaves the other-cpus metric out.
func machineBusy() time.Duration { return -1 }
