//go:build !unix

package e2e_test

import "time"

// processCPU is not measured on this OS.
func processCPU() time.Duration { return -1 }
