//go:build !linux

package udpio

import "errors"

// Poller is Linux only (epoll); here NewPoller fails with
// errors.ErrUnsupported, and a tunnel reads with ReadBatch from a
// goroutine of its own. See poller_linux.go for the contract.
type Poller struct{}

// Registration is a Conn added to a Poller.
type Registration struct{}

// NewPoller returns errors.ErrUnsupported off Linux.
func NewPoller() (*Poller, error) { return nil, errors.ErrUnsupported }

// Add returns errors.ErrUnsupported off Linux.
func (p *Poller) Add(c *Conn, h func() (more bool)) (*Registration, error) {
	return nil, errors.ErrUnsupported
}

// Remove does nothing off Linux.
func (p *Poller) Remove(r *Registration) {}

// Close does nothing off Linux.
func (p *Poller) Close() error { return nil }
