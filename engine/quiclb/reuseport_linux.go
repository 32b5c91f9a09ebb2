package quiclb

import (
	"fmt"
	"net"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// steeringSupported: the kernel has SO_ATTACH_REUSEPORT_CBPF (Linux 4.5+;
// an older one refuses it at Attach).
const steeringSupported = true

func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// Attach makes prog the steering program of c's reuseport group
// (SO_ATTACH_REUSEPORT_CBPF). It replaces the group's program, whoever
// attached it: one program serves every socket of the group, in every
// process, and it stays when c closes while others remain.
func Attach(c *net.UDPConn, prog []bpf.RawInstruction) error {
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	err = control(rc, func(fd uintptr) error {
		return unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if err != nil {
		return fmt.Errorf("quiclb: SO_ATTACH_REUSEPORT_CBPF: %w", err)
	}
	return nil
}
