//go:build unix

package e2e_test

import (
	"syscall"
	"time"
)

// processCPU is the user + system CPU time the process has used; -1 if the
// OS does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
