package quiclb

import (
	"context"
	"fmt"
	"net"
)

// OpenConfig says which sockets Open binds.
type OpenConfig struct {
	Addr       string
	ServerID   ServerID
	Transports int
	// GroupFile, if set, is the file through which the instances sharing
	// Addr learn the group's socket order (group.go, groupfile_linux.go).
	// Empty: this instance's sockets are the whole group.
	GroupFile string
}

// A Sockets is one instance's sockets on a reuseport address, and whether
// the kernel steers packets to them by connection ID.
type Sockets struct {
	// Conns are the transports' sockets: Conns[t] serves transport t.
	Conns []*net.UDPConn
	// Steered is false when the kernel refused the steering program:
	// Conns is one socket then, whatever was asked.
	Steered bool
	// SteerErr is why Steered is false (nil when steering was not tried:
	// one transport).
	SteerErr error

	cfg OpenConfig
}

// Open binds cfg.Transports sockets on cfg.Addr and attaches the steering
// program. Without a group file, a kernel that refuses the program leaves
// one socket open (Steered false, SteerErr why): unsteered sockets would hand
// packets to transports that do not know their connections. With a group
// file it is an error.
func Open(ctx context.Context, cfg OpenConfig) (*Sockets, error) {
	if cfg.Transports < 1 || cfg.Transports > MaxTransports {
		return nil, fmt.Errorf("quiclb: %d transports, want 1–%d", cfg.Transports, MaxTransports)
	}
	if cfg.GroupFile != "" {
		return joinGroup(ctx, cfg)
	}
	var steerErr error
	if cfg.Transports > 1 && !steeringSupported {
		cfg.Transports, steerErr = 1, errNoSteering
	}
	if cfg.Transports == 1 {
		// One socket, no group: a plain bind, so that nothing else can
		// join the address by accident.
		ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, err
		}
		return &Sockets{Conns: []*net.UDPConn{c}, SteerErr: steerErr, cfg: cfg}, nil
	}
	if err := checkFree(cfg.Addr); err != nil {
		return nil, err
	}
	conns, err := ListenGroup(ctx, cfg.Addr, cfg.Transports)
	if err != nil {
		return nil, err
	}
	s := &Sockets{Conns: conns, cfg: cfg}
	members := make([]Member, len(conns))
	for t := range members {
		members[t] = Member{ServerID: cfg.ServerID, Transport: t}
	}
	prog, err := Program(Routes(members))
	if err == nil {
		err = Attach(conns[0], prog)
	}
	if err != nil {
		closeAll(conns[1:])
		s.Conns, s.SteerErr = conns[:1], err
		return s, nil
	}
	s.Steered = true
	return s, nil
}

// Close closes the sockets. An instance in a group file first attaches the
// program for the group without it and takes itself out of the file, so
// that no packet of another instance reaches the wrong transport (group.go).
// Close the quic.Transports on the sockets first.
func (s *Sockets) Close() error {
	if s.cfg.GroupFile != "" {
		return s.leaveGroup()
	}
	closeAll(s.Conns)
	return nil
}

// checkFree fails if addr is bound already. SO_REUSEPORT would otherwise
// let this instance join another process's sockets on the port (same user)
// and take a share of its packets; a plain bind still fails against
// them. (A group file joins on purpose and skips this.) Port 0 is always
// free.
func checkFree(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	if ua.Port == 0 {
		return nil
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return err
	}
	return c.Close()
}
