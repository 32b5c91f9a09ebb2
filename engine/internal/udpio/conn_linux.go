//go:build linux

package udpio

// The Linux data path: recvmmsg and sendmmsg through the socket's
// syscall.RawConn.
//
// RawConn.Read(f) calls f with the descriptor, and while f returns false
// (the non-blocking call said EAGAIN) waits in Go's poller for the socket
// to become readable, honouring the read deadline and Close. The socket is
// non-blocking, so recvmmsg with no flags returns what is queued as soon
// as the queue runs dry: MSG_WAITFORONE's behaviour, with the poller doing
// the waiting.
//
// TryReadBatch passes RawConn.Read the same callback in try mode, where
// it returns true on EAGAIN too: RawConn.Read then never waits, and the
// EAGAIN comes back as an empty batch.
//
// WriteBatch may coalesce runs of same-size datagrams into GSO messages
// (gso_linux.go); a message then points at several iovecs, and sendmmsg
// counts messages, not datagrams.
//
// Each direction owns one mmsgCall: its mmsghdr and iovec arrays and the
// arguments and results of one system call. f is a method value bound once
// in init, so RawConn.Read(f) allocates nothing; it reads its arguments
// from the mmsgCall and leaves its results there, and only the goroutine
// that owns the direction touches it (f runs on that goroutine).

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgDisabled is set the first time the kernel refuses recvmmsg or
// sendmmsg; from then on every Conn, the ones already open included, uses
// one recvmsg or sendmsg per datagram. A kernel that lacks the calls, or a
// seccomp filter that forbids them, does not change while we run, so the
// switch is never undone.
var mmsgDisabled atomic.Bool

type sysConn struct {
	rc syscall.RawConn

	// single makes this Conn use one system call per datagram whatever
	// mmsgDisabled says. Only tests set it, through forceSingle.
	single atomic.Bool
	// noGSO switches GSO off for this Conn alone: set after a refusal
	// that may be this socket's path only (see gsoRefused), or by tests.
	noGSO atomic.Bool

	// gsoFault, when non-zero, makes every GSO message fail with this
	// errno (see injectFault). Only tests set it, through failGSO.
	gsoFault syscall.Errno
}

// A Conn holds no system call state between calls: each read and each
// write takes its mmsghdr and iovec arrays (and the write its GSO control
// messages) from a pool and gives them back when the call returns. That
// is ~6 KiB less per socket than keeping them, which matters with
// thousands of idle tunnels, and costs a sync.Pool Get and Put per system
// call, not per datagram; in steady state the pools' per-P caches serve
// them without allocating.
var (
	readCalls = sync.Pool{New: func() any {
		m := new(mmsgCall)
		for i := range m.hdrs {
			m.hdrs[i].Hdr.Iov = &m.iovs[i]
			m.hdrs[i].Hdr.SetIovlen(1)
		}
		m.fn = m.recv
		return m
	}}
	writeCalls = sync.Pool{New: func() any {
		w := new(writeCall)
		w.fn = w.send
		w.gso.init()
		return w
	}}
)

// writeCall is the state of one WriteBatch system call.
type writeCall struct {
	mmsgCall
	gso gsoState
}

// mmsgCall is one system call's state. On the read side hdrs[i].Hdr.Iov
// points at iovs[i] for good (set when the pool makes it); the write side
// points each message at its run of iovecs per call (writeCall.pack).
// Each call points iovs[i] at the caller's buffers and clears them again
// afterwards, so that a pooled mmsgCall keeps no caller's buffers alive.
type mmsgCall struct {
	hdrs [IdealBatchSize]unix.Mmsghdr
	iovs [IdealBatchSize]unix.Iovec

	n     int           // in: messages to pass; out: messages done
	batch bool          // in: recvmmsg/sendmmsg rather than recvmsg/sendmsg
	try   bool          // in: recv returns on EAGAIN instead of waiting
	errno syscall.Errno // out: the call's error, 0 if none; EAGAIN in try mode

	fn func(fd uintptr) bool // recv or send, bound once
}

func (s *sysConn) init(uc *net.UDPConn) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	s.rc = rc
	probeGSO(rc)
	return nil
}

// load points the first len(bufs) iovecs at bufs.
func (m *mmsgCall) load(bufs [][]byte) {
	for i, b := range bufs {
		m.iovs[i].Base = unsafe.SliceData(b)
		m.iovs[i].SetLen(len(b))
	}
}

// unload drops the first k iovecs' references to the caller's buffers.
func (m *mmsgCall) unload(k int) {
	for i := range k {
		m.iovs[i].Base = nil
	}
}

// recv is RawConn.Read's callback: one recvmmsg, or one recvmsg into
// hdrs[0], without blocking. It returns false only for EAGAIN, so that the
// poller waits and calls it again; in try mode it returns true then too,
// with m.errno = EAGAIN.
func (m *mmsgCall) recv(fd uintptr) bool {
	for {
		stats.rd.syscalls.Add(1)
		var r uintptr
		var errno syscall.Errno
		if m.batch {
			r, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd,
				uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.n), 0, 0, 0)
		} else {
			r, _, errno = unix.Syscall(unix.SYS_RECVMSG, fd,
				uintptr(unsafe.Pointer(&m.hdrs[0].Hdr)), 0)
			if errno == 0 {
				m.hdrs[0].Len = uint32(r)
				r = 1
			}
		}
		switch errno {
		case 0:
			m.n, m.errno = int(r), 0
		case unix.EINTR:
			// Retry at once: returning false would wait for an
			// edge that may already have passed.
			continue
		case unix.EAGAIN:
			stats.rd.empty.Add(1)
			if m.try {
				m.n, m.errno = 0, errno
				return true
			}
			return false
		default:
			m.n, m.errno = 0, errno
		}
		return true
	}
}

// send is RawConn.Write's callback: one sendmmsg, or one sendmsg of
// hdrs[0], without blocking; like recv it returns false only for EAGAIN.
//
// sendmmsg reports an error only if it sent nothing: when datagram i > 0
// fails it returns i and the kernel drops the error. WriteBatch then
// starts the next call at datagram i, which fails again first if the fault
// is the datagram's own (EMSGSIZE). An ICMP error that the kernel consumed
// on datagram i is lost that way, and datagram i goes out on the retry.
func (m *mmsgCall) send(fd uintptr) bool {
	for {
		stats.wr.syscalls.Add(1)
		var r uintptr
		var errno syscall.Errno
		if m.batch {
			r, _, errno = unix.Syscall6(unix.SYS_SENDMMSG, fd,
				uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.n), 0, 0, 0)
		} else {
			_, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd,
				uintptr(unsafe.Pointer(&m.hdrs[0].Hdr)), 0)
			r = 1
		}
		switch errno {
		case 0:
			m.n, m.errno = int(r), 0
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.n, m.errno = 0, errno
		}
		return true
	}
}

// refused reports whether errno says the kernel will not do recvmmsg or
// sendmmsg at all.
func refused(errno syscall.Errno) bool {
	return errno == unix.ENOSYS || errno == unix.EOPNOTSUPP
}

// batch reports whether c uses recvmmsg and sendmmsg.
func (s *sysConn) batch() bool { return !mmsgDisabled.Load() && !s.single.Load() }

func (c *Conn) readBatch(bufs [][]byte, sizes []int) (n, truncated int, err error) {
	for {
		n, t, err := c.recvBatch(bufs, sizes, false)
		truncated += t
		if err != nil || n > 0 || t == 0 {
			return n, truncated, err
		}
		// Every datagram was truncated: wait for more.
	}
}

func (c *Conn) tryReadBatch(bufs [][]byte, sizes []int) (n, truncated int, err error) {
	return c.recvBatch(bufs, sizes, true)
}

// recvBatch is one recvmmsg (or recvmsg) into bufs, waiting for the
// socket to become readable unless try is set. It drops truncated
// datagrams and closes the gaps they leave; with try, EAGAIN returns
// (0, 0, nil).
func (c *Conn) recvBatch(bufs [][]byte, sizes []int, try bool) (n, truncated int, err error) {
	m := readCalls.Get().(*mmsgCall)
	defer readCalls.Put(m)
	for {
		count := min(len(bufs), len(sizes), IdealBatchSize)
		batch := c.sys.batch()
		if !batch {
			count = min(count, 1)
		}
		if count == 0 {
			return 0, 0, nil
		}
		m.load(bufs[:count])
		m.n, m.batch, m.try = count, batch, try
		err := c.sys.rc.Read(m.fn)
		m.unload(count)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case m.errno == 0:
		case m.errno == unix.EAGAIN: // try mode only
			return 0, 0, nil
		case batch && refused(m.errno):
			mmsgDisabled.Store(true) // never undone; see mmsgDisabled
			continue
		default:
			return 0, 0, sysError("read", batch, "recvmmsg", "recvmsg", m.errno)
		}
		stats.rd.datagrams.Add(uint64(m.n))
		k := 0
		for i := range m.n {
			size := int(m.hdrs[i].Len)
			if m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 || size > len(bufs[k]) {
				truncated++
				continue
			}
			if k != i {
				copy(bufs[k], bufs[i][:size])
			}
			sizes[k] = size
			k++
		}
		return k, truncated, nil
	}
}

func (c *Conn) writeBatch(bufs [][]byte) (n, tooLarge int, err error) {
	s := &c.sys
	w := writeCalls.Get().(*writeCall)
	defer writeCalls.Put(w)
	m := &w.mmsgCall
	// retry is set when bufs[n] met EMSGSIZE once. EMSGSIZE can also be
	// an ICMP "fragmentation needed" for an earlier datagram, which the
	// kernel reports on this call instead of sending bufs[n]; only a
	// second EMSGSIZE for bufs[n] alone (no GSO, no batch) says that
	// bufs[n] is too large.
	retry := false
	for n < len(bufs) {
		batch := !retry && s.batch()
		gso := !retry && s.gsoOn()
		dgrams, msgs := w.pack(bufs[n:], gso, batch)
		// gsoFirst: the call's first message is a GSO run, so an error
		// the kernel reports for the call may be a refusal of GSO.
		gsoFirst := w.gso.segs[0] > 1
		m.n, m.batch = msgs, batch
		var err error
		if s.gsoFault != 0 && w.gso.injectFault(m) {
			m.n, m.errno = 0, s.gsoFault // test hook: see failGSO
		} else {
			err = s.rc.Write(m.fn)
		}
		m.unload(dgrams)
		if err != nil {
			return n, tooLarge, err
		}
		if refused, global := gsoRefused(m.errno); refused && gsoFirst {
			// Nothing of the refused message went out: send the same
			// datagrams again, without GSO.
			s.disableGSO(global)
			continue
		}
		switch {
		case m.errno == 0:
			n += w.sent(m.n)
			retry = false
		case m.errno == unix.EMSGSIZE && !retry:
			retry = true
		case m.errno == unix.EMSGSIZE:
			tooLarge++
			n++
			retry = false
		case batch && refused(m.errno):
			mmsgDisabled.Store(true) // never undone; see mmsgDisabled
		default:
			return n, tooLarge, sysError("write", batch, "sendmmsg", "sendmsg", m.errno)
		}
	}
	return n, tooLarge, nil
}

// sysError wraps errno from the batched or single system call, classified
// if the package gives it a class.
func sysError(op string, batch bool, batchCall, singleCall string, errno syscall.Errno) error {
	name := singleCall
	if batch {
		name = batchCall
	}
	err := os.NewSyscallError(name, errno)
	if cerr := classify(op, err); cerr != nil {
		return cerr
	}
	return &net.OpError{Op: op, Net: "udp", Err: err}
}

// forceSingle makes c use one system call per datagram, as after a
// refusal, without touching mmsgDisabled. For tests.
func (c *Conn) forceSingle() { c.sys.single.Store(true) }

// batched reports whether c uses recvmmsg and sendmmsg.
func (c *Conn) batched() bool { return c.sys.batch() }
