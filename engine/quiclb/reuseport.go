package quiclb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ListenGroup opens n UDP sockets on addr with SO_REUSEPORT, in order: the
// kernel gives them the group slots they join in, after any sockets other
// processes hold on the address already. Port 0 picks a free port for the
// first socket and binds the others to it. On error none is left open.
func ListenGroup(ctx context.Context, addr string, n int) ([]*net.UDPConn, error) {
	if n < 1 {
		return nil, fmt.Errorf("quiclb: %d sockets", n)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return control(c, setReusePort)
	}}
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
		addr = pc.LocalAddr().String() // the port the first one got
	}
	return conns, nil
}

// errNoSteering: this system cannot steer a reuseport group.
var errNoSteering = errors.New("quiclb: reuseport steering needs Linux")

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}

// control runs f on c's descriptor and returns f's error or Control's.
func control(c syscall.RawConn, f func(fd uintptr) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = f(fd) }); err != nil {
		return err
	}
	return ferr
}
