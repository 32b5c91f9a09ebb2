package ifwatch

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// errLost: the kernel dropped notifications (the socket's buffer was full).
var errLost error = unix.ENOBUFS

// subscribe opens a non-blocking rtnetlink socket bound to the address
// groups. Non-blocking, so that os.NewFile puts it on the runtime's poller:
// a Read waits without holding a thread, and Close unblocks it.
func subscribe() (io.ReadCloser, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return os.NewFile(uintptr(fd), "rtnetlink"), nil
}
