//go:build !linux

package packetio

import (
	"errors"
	"fmt"
	"runtime"
)

// TUN is a Device backed by a Linux TUN interface. This platform has none:
// OpenTUN always fails, and a TUN value is never returned.
type TUN struct{}

var _ Device = (*TUN)(nil)

// OpenTUN fails on this platform with an error matching errors.ErrUnsupported.
func OpenTUN(name string, mtu int) (*TUN, error) {
	return nil, fmt.Errorf("packetio: TUN backend on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Name is the interface's name.
func (*TUN) Name() string { return "" }

// MTU implements Device.
func (*TUN) MTU() int { return 0 }

// BatchSize implements Device.
func (*TUN) BatchSize() int { return 1 }

// Stats returns the counters.
func (*TUN) Stats() TUNStats { return TUNStats{} }

// ReadPackets implements Device.
func (*TUN) ReadPackets([][]byte, []int) (int, error) { return 0, errClosed }

// WritePackets implements Device.
func (*TUN) WritePackets([][]byte) (int, error) { return 0, errClosed }

// Close implements Device.
func (*TUN) Close() error { return nil }
