package quiclb

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// The group file lists a reuseport group's sockets in slot order (one line
// each, "server-ID transport"); instances hold an exclusive flock on it
// while they join or leave, so the order they write is the kernel's. An
// instance that dies without leaving leaves its lines behind, and the
// kernel's order no longer matches the file: start the group afresh then
// (delete the file with every instance stopped). An eBPF socket array keyed
// by server ID and transport would not depend on the order; it needs
// CAP_BPF, which this does not.

// lockGroupFile opens and locks path; unlock closes it.
func lockGroupFile(path string) (f *os.File, members []Member, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	b, err := io.ReadAll(f)
	if err == nil {
		members, err = parseMembers(b)
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, members, nil
}

func writeGroupFile(f *os.File, members []Member) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(formatMembers(members), 0)
	return err
}

func joinGroup(ctx context.Context, cfg OpenConfig) (*Sockets, error) {
	f, members, err := lockGroupFile(cfg.GroupFile)
	if err != nil {
		return nil, err
	}
	defer f.Close() // unlocks
	if slices.ContainsFunc(members, func(m Member) bool { return m.ServerID == cfg.ServerID }) {
		return nil, fmt.Errorf("quiclb: server ID %s is in group file %s already", cfg.ServerID, cfg.GroupFile)
	}
	conns, err := ListenGroup(ctx, cfg.Addr, cfg.Transports)
	if err != nil {
		return nil, err
	}
	for t := range conns {
		members = append(members, Member{ServerID: cfg.ServerID, Transport: t})
	}
	prog, err := Program(Routes(members))
	if err == nil {
		err = Attach(conns[0], prog)
	}
	if err == nil {
		err = writeGroupFile(f, members)
	}
	if err != nil {
		closeAll(conns)
		return nil, fmt.Errorf("quiclb: join group %s: %w", cfg.GroupFile, err)
	}
	return &Sockets{Conns: conns, Steered: true, cfg: cfg}, nil
}

func (s *Sockets) leaveGroup() error {
	f, members, err := lockGroupFile(s.cfg.GroupFile)
	if err != nil {
		closeAll(s.Conns)
		return err
	}
	defer f.Close()
	after := Leave(members, s.cfg.ServerID)
	if len(after) > 0 {
		// The survivors' program first: see group.go.
		prog, perr := Program(Routes(after))
		if perr == nil {
			perr = Attach(s.Conns[0], prog)
		}
		if perr != nil {
			err = fmt.Errorf("quiclb: steering for the group without %s: %w", s.cfg.ServerID, perr)
		}
	}
	if werr := writeGroupFile(f, after); err == nil {
		err = werr
	}
	for _, t := range LeaveOrder(members, s.cfg.ServerID) {
		if t < len(s.Conns) {
			s.Conns[t].Close() // returns once the kernel has the socket out of the group
		}
	}
	return err
}
