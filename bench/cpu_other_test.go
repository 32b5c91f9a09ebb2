//go:build !unix

package bench

import "time"

// processCPU is not measured here; -1 leaves the cpus metric out.
func processCPU() time.Duration { return -1 }
