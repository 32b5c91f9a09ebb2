//go:build !linux

package quiclb

import (
	"net"

	"golang.org/x/net/bpf"
)

const steeringSupported = false

func setReusePort(uintptr) error { return errNoSteering }

// Attach is Linux only.
func Attach(*net.UDPConn, []bpf.RawInstruction) error { return errNoSteering }
