// Package udpio is a tunnel's UDP socket to its target: one connected UDP
// socket that reads and writes datagrams in batches.
//
// On Linux a batch is one recvmmsg or sendmmsg system call, made through
// the socket's syscall.RawConn so that Go's poller still does the waiting,
// deadlines and Close. If the kernel refuses those calls (ENOSYS,
// EOPNOTSUPP), the package switches, once and for every Conn, to
// one recvmsg or sendmsg per datagram. Elsewhere a batch is a loop of
// single reads or writes on the net.UDPConn.
//
// Why not golang.org/x/net/ipv4.PacketConn.ReadBatch: it turns every
// received datagram's source address into a *net.UDPAddr, two allocations
// per datagram (BenchmarkEcho/xnet reports them). A connected socket has
// no use for the address; the Conn owns its mmsghdr and iovec arrays, makes
// the system calls itself with unix.Syscall6, and allocates nothing per
// call.
//
// On Linux, WriteBatch coalesces runs of same-size datagrams with UDP GSO
// (gso_linux.go), and a Poller (poller_linux.go) lets one goroutine serve
// the reads of many Conns through edge-triggered epoll and TryReadBatch,
// instead of a goroutine parked per socket. Stats reports the package's
// counters: system calls and datagrams each way, GSO, poller wake-ups.
//
// A tunnel uses a Conn from two goroutines: its reader calls ReadBatch in a
// loop and its session writes with WriteBatch. Each direction has its own
// syscall arrays, so the two never contend; two concurrent readers, or two
// concurrent writers, are not allowed.
package udpio

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// IdealBatchSize is the most datagrams one ReadBatch returns and one system
// call of WriteBatch sends; longer batches go out in chunks of this size.
// At 32 the fixed cost of a system call is already a small share of the
// kernel's work per datagram (BenchmarkEcho, cpu-ns/dgram), and a larger
// size would grow the syscall arrays that every Conn carries (about 2.5 KiB
// per direction at 32).
const IdealBatchSize = 32

// Conn is one connected UDP socket. One reader goroutine (ReadBatch) and
// one writer goroutine (WriteBatch, Write) may use it concurrently; any
// goroutine may call Close, SetReadDeadline and the address methods.
//
// After Close, ReadBatch, WriteBatch, Write and SetReadDeadline return an
// error that matches net.ErrClosed.
type Conn struct {
	uc     *net.UDPConn
	laddr  netip.AddrPort
	raddr  netip.AddrPort
	closed atomic.Bool

	sys sysConn // platform part: conn_linux.go, conn_default.go
}

// Dial opens a UDP socket connected to raddr, IPv4 or IPv6. An IPv4-mapped
// IPv6 address is dialled as IPv4. The socket reports ICMP errors from the
// target, as a connected UDP socket does: see ErrTargetUnreachable.
func Dial(ctx context.Context, raddr netip.AddrPort) (*Conn, error) {
	if !raddr.IsValid() {
		return nil, errors.New("udpio: dial: invalid address")
	}
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	network := "udp6"
	if raddr.Addr().Is4() {
		network = "udp4"
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, raddr.String())
	if err != nil {
		return nil, err
	}
	c, err := newConn(nc.(*net.UDPConn))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// newConn wraps a connected UDP socket; the Conn owns it from now on.
func newConn(uc *net.UDPConn) (*Conn, error) {
	la, ok1 := uc.LocalAddr().(*net.UDPAddr)
	ra, ok2 := uc.RemoteAddr().(*net.UDPAddr)
	if !ok1 || !ok2 || ra == nil {
		return nil, errors.New("udpio: socket is not a connected UDP socket")
	}
	c := &Conn{uc: uc, laddr: la.AddrPort(), raddr: ra.AddrPort()}
	if err := c.sys.init(uc); err != nil {
		return nil, err
	}
	return c, nil
}

// SetReadDeadline sets the deadline for ReadBatch; a zero t means none.
// A ReadBatch blocked past it returns an error that matches
// os.ErrDeadlineExceeded.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Close closes the socket. A ReadBatch or WriteBatch blocked on it returns
// at once with an error that matches net.ErrClosed. Close is idempotent:
// calls after the first return nil.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	// Closing the descriptor evicts it from Go's poller, which wakes any
	// goroutine waiting in RawConn.Read or RawConn.Write; the poller holds
	// the descriptor open until they have left, so no system call of ours
	// can run on a reused descriptor number.
	return c.uc.Close()
}

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() netip.AddrPort { return c.laddr }

// RemoteAddr returns the target the socket is connected to.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.raddr }

// ReadBatch reads datagrams into bufs: on return bufs[i][:sizes[i]] holds
// datagram i, for i < n. It blocks until at least one datagram is there,
// then returns what the kernel has queued, up to min(len(bufs), len(sizes),
// IdealBatchSize) datagrams; with no room at all it returns 0 at once.
//
// A datagram longer than its buffer is dropped, not returned cut short
// (Linux only: elsewhere it is cut short, or an error, as the OS does it),
// and counted in truncated, which is valid even when err != nil. To keep
// the returned datagrams in bufs[:n], ReadBatch may copy a datagram into
// an earlier buffer of the batch; a datagram that the earlier buffer
// cannot hold is dropped and counted too, so give every buffer the same
// length (Buffer.Payload does).
//
// Errors: ErrTargetUnreachable and ErrTooLarge report ICMP errors for
// earlier writes and leave the Conn usable; read on. A passed deadline
// matches os.ErrDeadlineExceeded, a closed Conn net.ErrClosed.
//
// Only one goroutine may call ReadBatch at a time.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int) (n, truncated int, err error) {
	return c.readBatch(bufs, sizes)
}

// TryReadBatch is ReadBatch that never waits: it makes one recvmmsg (one
// recvmsg on the fallback path) and returns what it found. An empty
// socket returns n == 0, truncated == 0 and a nil error. Datagrams, the
// truncation rule, errors and the one-reader rule are ReadBatch's
// (TryReadBatch and ReadBatch share the reader's state: never call them
// concurrently); the read deadline is not waited on, but a deadline that
// has already passed still fails the call.
//
// It is meant for a Poller's handler. With edge-triggered readiness, a
// read that returns fewer datagrams than it had room for,
// n+truncated < min(len(bufs), len(sizes), IdealBatchSize), has emptied
// the socket: the handler's turn is over, and a datagram that arrives
// later raises a new edge, so no read is spent just to learn EAGAIN. A
// read that fills its room may have left more behind: the handler says so
// by returning true, and the Poller calls it again in its next round (see
// Poller). After a classified error (ErrTargetUnreachable, ErrTooLarge)
// datagrams may still be queued: return true as well.
//
// Off Linux it returns errors.ErrUnsupported.
func (c *Conn) TryReadBatch(bufs [][]byte, sizes []int) (n, truncated int, err error) {
	return c.tryReadBatch(bufs, sizes)
}

// WriteBatch sends each of bufs as one datagram, in order, in as few
// system calls as the OS allows (one per IdealBatchSize datagrams on
// Linux). There is no delivery guarantee: UDP may drop any datagram.
//
// On Linux, runs of consecutive datagrams of one size (the last of a run
// may be shorter) go to the kernel as one GSO message each (UDP_SEGMENT),
// so the kernel builds one packet chain per run instead of one per
// datagram; the receiver still gets the same datagrams. If the kernel
// refuses GSO, WriteBatch switches it off and sends those datagrams
// without it: see Stats for the counters.
//
// n is how many of bufs it is done with, and tooLarge how many of those it
// dropped because the kernel refused them as too large (EMSGSIZE); the
// other n-tooLarge were sent. A refused datagram does not stop the batch.
// err is nil exactly when n == len(bufs). Otherwise bufs[n] was not sent,
// and the caller may retry bufs[n:] or drop them: after
// ErrTargetUnreachable (an ICMP error for an earlier datagram, which the
// kernel reported instead of sending bufs[n]) a retry usually succeeds;
// after net.ErrClosed none will.
//
// Counting ErrTargetUnreachable gives a lower bound: the kernel keeps one
// pending ICMP error per socket, and Linux's sendmmsg discards one that
// stops it mid-batch (it reports only errors that stop it at its first
// datagram, see mmsgCall.send).
//
// Only one goroutine may call WriteBatch or Write at a time.
func (c *Conn) WriteBatch(bufs [][]byte) (n, tooLarge int, err error) {
	return c.writeBatch(bufs)
}

// Write sends b as one datagram. It returns ErrTooLarge if the kernel
// refuses b as too large, and otherwise what WriteBatch would.
func (c *Conn) Write(b []byte) error {
	bufs := [1][]byte{b}
	_, tooLarge, err := c.WriteBatch(bufs[:])
	if err == nil && tooLarge != 0 {
		return errTooLargeWrite
	}
	return err
}

// errTooLargeWrite is Write's ErrTooLarge, made once: WriteBatch has
// already consumed the EMSGSIZE it stands for.
var errTooLargeWrite = &classError{class: ErrTooLarge, op: "write", cause: syscall.EMSGSIZE}
