//go:build !linux

package e2e

import (
	"errors"
	"time"
)

var errNotLinux = errors.New("e2e: process statistics and CPU pinning need Linux")

// AllowedCPUs is not known on this OS.
func AllowedCPUs() ([]int, error) { return nil, errNotLinux }

// PinProcess is not supported on this OS.
func PinProcess(...int) error { return errNotLinux }

func readProcStats(int) (ProcStats, error) { return ProcStats{}, errNotLinux }

// SyscallCounters are not available on this OS.
type SyscallCounters struct{}

// SyscallNames are the syscalls counted one by one on Linux.
var SyscallNames []string

// OpenSyscallCounters fails on this OS.
func OpenSyscallCounters(int) (*SyscallCounters, error) { return nil, errNotLinux }

// Read returns nothing.
func (*SyscallCounters) Read() (map[string]uint64, error) { return nil, errNotLinux }

// Close does nothing.
func (*SyscallCounters) Close() error { return nil }

// MachineBusy is not known on this OS.
func MachineBusy() (time.Duration, error) { return 0, errNotLinux }
