//go:build !linux

package udpio

// The portable data path: a batch is a loop of single reads or writes on
// the net.UDPConn. A datagram longer than its buffer is cut short or
// returned as an error, as the OS does it; truncated is always 0.

import (
	"errors"
	"net"
)

type sysConn struct{}

func (s *sysConn) init(*net.UDPConn) error { return nil }

func (c *Conn) readBatch(bufs [][]byte, sizes []int) (n, truncated int, err error) {
	if len(bufs) == 0 || len(sizes) == 0 {
		return 0, 0, nil
	}
	size, err := c.uc.Read(bufs[0])
	if err != nil {
		if cerr := classify("read", err); cerr != nil {
			return 0, 0, cerr
		}
		return 0, 0, err
	}
	sizes[0] = size
	return 1, 0, nil
}

func (c *Conn) tryReadBatch([][]byte, []int) (n, truncated int, err error) {
	return 0, 0, errors.ErrUnsupported
}

// There is no GSO here: Stats reports it disabled.
func init() { gsoDisabled.Store(true) }

func (c *Conn) writeBatch(bufs [][]byte) (n, tooLarge int, err error) {
	for n < len(bufs) {
		if _, err := c.uc.Write(bufs[n]); err != nil {
			cerr := classify("write", err)
			if errors.Is(cerr, ErrTooLarge) {
				tooLarge++
				n++
				continue
			}
			if cerr != nil {
				return n, tooLarge, cerr
			}
			return n, tooLarge, err
		}
		n++
	}
	return n, tooLarge, nil
}

func (c *Conn) forceSingle() {}

func (c *Conn) forceNoGSO() {}

func (c *Conn) gsoAllowed() bool { return false }

func (c *Conn) batched() bool { return false }
