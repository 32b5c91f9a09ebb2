//go:build !linux

package quiclb

import "context"

func joinGroup(context.Context, OpenConfig) (*Sockets, error) { return nil, errNoSteering }

func (s *Sockets) leaveGroup() error {
	closeAll(s.Conns)
	return nil
}
