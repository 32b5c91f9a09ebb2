//go:build linux

package udpio

// UDP generic segmentation offload on WriteBatch.
//
// With a UDP_SEGMENT control message of size s, one sendmsg hands the
// kernel a buffer that it cuts into datagrams of s bytes each, the last
// one possibly shorter: one trip through the stack, one skb, for the
// whole run. WriteBatch coalesces each run of consecutive datagrams of
// one size (the last may be shorter) into one message whose iovecs are
// the run's datagrams and whose control message carries the size; the
// messages, runs and single datagrams alike, then go out in one sendmmsg
// as before.
//
// Invariants:
//   - A run has at least two datagrams (one needs no control message);
//     every datagram of a run but the last is exactly the run's segment
//     size s ≥ 1, and the last is 1..s bytes. A zero-length datagram is
//     never in a run: the kernel would fold it into nothing.
//   - A run holds at most gsoMaxSegments datagrams and at most
//     gsoMaxBytes bytes, under the kernel's limits (UDP_MAX_SEGMENTS, 64,
//     and a 65535-byte IP datagram). One system call still carries at
//     most IdealBatchSize datagrams, so in practice a run holds ≤ 32.
//   - gsoDisabled only goes from false to true; a Conn's noGSO likewise.
//
// Detection. The first Conn asks the kernel whether it knows UDP_SEGMENT
// (getsockopt); a kernel that does not (before 4.18) would ignore the
// control message and send each run as one long datagram, so without
// that answer GSO stays off. A kernel that knows it can still refuse a
// send (gsoRefused): EIO from a device that cannot checksum, EOPNOTSUPP
// and the like from a stack that does not do it. Such a refusal sends
// nothing of the refused message, so WriteBatch switches GSO off (for
// every Conn, or for this Conn only, see gsoRefused), counts it and
// sends the same datagrams again without it: no datagram is lost.

// No GRO on the receive side, on purpose. With UDP_GRO the kernel hands
// one recvmsg a chain of same-size datagrams as one buffer of up to 64 KiB
// with a gso_size control message. ReadBatch and TryReadBatch fill the
// caller's buffers, MaxPayload bytes each, one datagram per buffer, and
// return what fit: a coalesced chain would need its own 64 KiB buffer per
// message (2 MiB per Conn for a batch of 32), a copy out of it into the
// caller's buffers, and somewhere to keep the segments that did not fit
// until the next call, which would make a Conn hold datagrams the socket
// no longer does and break the edge-triggered rule in TryReadBatch (an
// empty socket with datagrams still held gets no new edge). Targets
// rarely send runs of same-size datagrams back to back anyway. A reader
// that owns 64 KiB buffers and hands out slices of them could do it; that
// is a different API.

import (
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS.
	gsoMaxSegments = 64
	// gsoMaxBytes is the most payload one GSO message carries: a 65535-
	// byte IPv4 datagram less its 20-byte header and the 8-byte UDP
	// header. IPv6 would allow 20 bytes more; one limit serves both.
	gsoMaxBytes = 65535 - 20 - 8
)

// gsoCmsg is one UDP_SEGMENT control message, laid out as the kernel
// reads it: a Cmsghdr followed, at CmsgLen(0), by the uint16 segment
// size. A test checks the offset on the build architecture.
type gsoCmsg struct {
	hdr  unix.Cmsghdr
	size uint16
	_    [6]byte
}

// gsoCmsgSpace is the control length a message with one gsoCmsg declares.
var gsoCmsgSpace = unix.CmsgSpace(2)

// gsoState is the writer's GSO state: one control message per mmsghdr,
// and how many datagrams each mmsghdr of the last call carried. Owned by
// the writer of one call, like writeCall's mmsgCall.
type gsoState struct {
	ctrl [IdealBatchSize]gsoCmsg
	segs [IdealBatchSize]uint8 // datagrams in message i of the last call
}

func (g *gsoState) init() {
	for i := range g.ctrl {
		g.ctrl[i].hdr.Level = unix.SOL_UDP
		g.ctrl[i].hdr.Type = unix.UDP_SEGMENT
		g.ctrl[i].hdr.SetLen(unix.CmsgLen(2))
	}
}

// gsoProbe asks the kernel once, on the first Conn, whether it knows
// UDP_SEGMENT; if not, GSO is off for good.
var gsoProbe sync.Once

func probeGSO(rc syscall.RawConn) {
	gsoProbe.Do(func() {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			_, err = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
		})
		if cerr != nil || err != nil {
			gsoDisabled.Store(true) // never undone; see gsoDisabled
		}
	})
}

// gsoOn reports whether c's next WriteBatch may coalesce.
func (s *sysConn) gsoOn() bool { return !gsoDisabled.Load() && !s.noGSO.Load() }

// gsoRefused reports whether errno, from a send whose first message was
// a GSO run, says the kernel will not segment it, and if so whether that
// holds for every socket (global) or may be this socket's path alone.
//
// EINVAL is the path's: the kernel says it when a segment does not fit
// the route's MTU (segment + headers > MTU), which a single datagram
// would not meet (it is fragmented, or refused with EMSGSIZE). Switching
// GSO off for the whole process because one target sits behind a small
// MTU would cost every other tunnel, so EINVAL turns it off for the Conn.
// The others say the device or the stack cannot do it at all. ENOSYS is
// not among them: it means sendmmsg itself is missing (see refused).
func gsoRefused(errno syscall.Errno) (refused, global bool) {
	switch errno {
	case unix.EIO, unix.ENOPROTOOPT, unix.EOPNOTSUPP, unix.EPROTONOSUPPORT:
		return true, true
	case unix.EINVAL:
		return true, false
	}
	return false, false
}

// disableGSO switches GSO off after a refusal: for every Conn if global,
// else for c alone. Counted in GSORefusals either way.
func (s *sysConn) disableGSO(global bool) {
	stats.wr.gsoRefusals.Add(1)
	if global {
		gsoDisabled.Store(true) // never undone; see gsoDisabled
		return
	}
	s.noGSO.Store(true) // never undone for this Conn
}

// pack lays out the next system call of WriteBatch: it points the
// writer's mmsghdrs and iovecs at the first datagrams of bufs and
// returns how many datagrams and messages the call carries. With gso it
// coalesces runs (see the invariants at the top); with batch it fills
// up to IdealBatchSize messages for sendmmsg, else one for sendmsg.
func (w *writeCall) pack(bufs [][]byte, gso, batch bool) (dgrams, msgs int) {
	m, g := &w.mmsgCall, &w.gso
	limit := min(len(bufs), IdealBatchSize)
	maxMsgs := IdealBatchSize
	if !batch {
		maxMsgs = 1
	}
	i := 0
	for i < limit && msgs < maxMsgs {
		start := i
		seg := len(bufs[i])
		total := seg
		i++
		for gso && seg > 0 && i < limit && i-start < gsoMaxSegments {
			size := len(bufs[i])
			if size == 0 || size > seg || total+size > gsoMaxBytes {
				break
			}
			total += size
			i++
			if size < seg {
				break // a shorter datagram ends its run
			}
		}
		h := &m.hdrs[msgs].Hdr
		h.Iov = &m.iovs[start]
		h.SetIovlen(i - start)
		if i-start > 1 {
			g.ctrl[msgs].size = uint16(seg) // seg ≤ gsoMaxBytes/2: two fit
			h.Control = (*byte)(unsafe.Pointer(&g.ctrl[msgs]))
			h.SetControllen(gsoCmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		g.segs[msgs] = uint8(i - start)
		msgs++
	}
	m.load(bufs[:i])
	return i, msgs
}

// sent accounts for the first msgs messages of the last call, which the
// kernel accepted, and returns how many datagrams they carried.
func (w *writeCall) sent(msgs int) (dgrams int) {
	var gsoSends, gsoDgrams uint64
	for _, k := range w.gso.segs[:msgs] {
		dgrams += int(k)
		if k > 1 {
			gsoSends++
			gsoDgrams += uint64(k)
		}
	}
	stats.wr.datagrams.Add(uint64(dgrams))
	if gsoSends != 0 {
		stats.wr.gsoSends.Add(gsoSends)
		stats.wr.gsoDatagrams.Add(gsoDgrams)
	}
	return dgrams
}

// injectFault applies the test hook to the call m is about to make, the
// way sendmmsg meets a refused message: if the first GSO run is the
// call's first message, the call fails (injectFault returns true, no
// system call); if it comes later, the call is cut to the messages before
// it, which go out, and the next call starts at the run.
func (g *gsoState) injectFault(m *mmsgCall) bool {
	for i, k := range g.segs[:m.n] {
		if k > 1 {
			if i == 0 {
				return true
			}
			m.n = i
			break
		}
	}
	return false
}

// failGSO makes every later GSO message of c fail with errno, as a
// kernel that refuses GSO would (see injectFault). For tests.
func (c *Conn) failGSO(errno syscall.Errno) { c.sys.gsoFault = errno }

// gsoAllowed reports whether c's WriteBatch coalesces. For tests.
func (c *Conn) gsoAllowed() bool { return c.sys.gsoOn() }

// forceNoGSO switches GSO off for c alone. For tests and benchmarks.
func (c *Conn) forceNoGSO() { c.sys.noGSO.Store(true) }
