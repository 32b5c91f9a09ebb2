package udpio

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// A QUICConn is the UDP socket a quic.Transport sends and receives on, with
// its writes batched: WriteMsgUDP copies the packet into a queue and
// returns, and one flusher goroutine per QUICConn sends everything queued
// with sendmmsg, merging runs of same-size packets to the same address into
// one UDP GSO message.
//
// Why. quic-go writes one packet per sendmsg (it uses GSO only for runs of
// full-size packets, which a packet carrying a 1200-byte DATAGRAM is not),
// from one send goroutine per connection. The flusher runs when those
// goroutines have written what they had: at GOMAXPROCS 1 the writer that
// fills an empty queue readies it, and it runs once the writers park, so
// one system call carries every packet the connections produced in that
// time, across connections.
//
// What changes for quic-go. A write reports success once queued: a packet
// the kernel later refuses (EMSGSIZE from a path-MTU probe, say) is
// dropped and counted (Counters.ClientDropped), as if lost on the path, which QUIC
// recovers from. The queue is bounded (quicQueueBytes, quicQueueMsgs):
// a writer that finds it full waits for the flusher, so a socket that
// cannot keep up still pushes back on quic-go's senders. Reads are
// untouched (ReadBatch is x/net's recvmmsg on the same socket).
//
// Close stops the flusher after it has sent what was queued, then closes
// the socket.
type QUICConn struct {
	*net.UDPConn
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6
	batch  *ipv4.PacketConn

	mu       sync.Mutex
	room     sync.Cond // signalled when the flusher takes the queue
	fill     *quicQueue
	closed   bool
	kick     chan struct{} // capacity 1: the queue went non-empty
	quit     chan struct{}
	finished chan struct{}

	noGSO atomic.Bool // the kernel refused a GSO send on this socket
	flush quicFlush   // the flusher's own state
}

const (
	// quicQueueMsgs and quicQueueBytes bound one queue; the flusher holds
	// a second while it sends.
	quicQueueMsgs  = 256
	quicQueueBytes = 512 << 10
	// quicMaxOOB is the most control data a queued packet may carry
	// (quic-go's: packet info, ECN, a UDP_SEGMENT size).
	quicMaxOOB = 128
)

// quicQueue is one batch of packets being filled or sent.
type quicQueue struct {
	arena []byte // packets and their control data, back to back
	msgs  []quicMsg
}

// quicMsg is one queued packet.
type quicMsg struct {
	off, n       int // payload in arena
	oobOff, oobN int // control data in arena
	sa           [unix.SizeofSockaddrInet6]byte
	salen        uint32
}

// quicFlush is the flusher goroutine's state.
type quicFlush struct {
	q     *quicQueue // the one being sent
	hdrs  [IdealBatchSize]unix.Mmsghdr
	segs  [IdealBatchSize]uint8 // packets in hdrs[i]
	first [IdealBatchSize]int   // index of hdrs[i]'s first packet in pack's msgs
	iovs  [gsoMaxSegments * IdealBatchSize]unix.Iovec
	ctrl  [IdealBatchSize][quicMaxOOB + 32]byte
	n     int           // messages in hdrs
	start int           // first message not yet sent
	errno syscall.Errno // the last call's error: hdrs[start] failed
	// gsoFault, when non-zero, fails every GSO message with this errno,
	// as a kernel that refuses it would. Only tests set it, before the
	// first write.
	gsoFault syscall.Errno
	sendFn   func(fd uintptr) bool
}

// NewQUICConn wraps uc, which the QUICConn then owns. It starts the
// flusher.
func NewQUICConn(uc *net.UDPConn) (*QUICConn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET6
	var serr error
	if err := rc.Control(func(fd uintptr) { family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	probeGSO(rc)
	c := &QUICConn{
		UDPConn:  uc,
		rc:       rc,
		family:   family,
		batch:    ipv4.NewPacketConn(uc),
		fill:     newQUICQueue(),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	c.room.L = &c.mu
	c.flush.q = newQUICQueue()
	c.flush.sendFn = c.flush.send
	go c.routineFlush()
	return c, nil
}

func newQUICQueue() *quicQueue {
	return &quicQueue{arena: make([]byte, 0, quicQueueBytes), msgs: make([]quicMsg, 0, quicQueueMsgs)}
}

// ReadBatch is x/net's ReadBatch on the socket; quic-go reads through it.
func (c *QUICConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.batch.ReadBatch(ms, flags)
}

// WriteMsgUDP queues b with its control data oob for addr and returns. It
// waits only while the queue is full.
func (c *QUICConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if len(oob) > quicMaxOOB || len(b)+len(oob) > quicQueueBytes {
		return c.UDPConn.WriteMsgUDP(b, oob, addr) // never seen from quic-go; sent as is
	}
	var m quicMsg
	if m.salen = putSockaddr(&m.sa, c.family, addr); m.salen == 0 {
		return 0, 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: syscall.EAFNOSUPPORT}
	}
	c.mu.Lock()
	for !c.closed && (len(c.fill.msgs) == cap(c.fill.msgs) || len(c.fill.arena)+len(b)+len(oob) > cap(c.fill.arena)) {
		c.room.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		return 0, 0, net.ErrClosed
	}
	q := c.fill
	wasEmpty := len(q.msgs) == 0
	m.off, m.n = len(q.arena), len(b)
	q.arena = append(q.arena, b...)
	m.oobOff = len(q.arena)
	q.arena = appendOOB(q.arena, oob, len(b))
	m.oobN = len(q.arena) - m.oobOff
	q.msgs = append(q.msgs, m)
	c.mu.Unlock()
	if wasEmpty {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return len(b), len(oob), nil
}

// Close sends what is queued, stops the flusher and closes the socket.
func (c *QUICConn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.room.Broadcast()
	c.mu.Unlock()
	if already {
		return net.ErrClosed
	}
	close(c.quit)
	<-c.finished
	return c.UDPConn.Close()
}

// putSockaddr writes addr into sa as the socket's family wants it — a
// sockaddr_in on an IPv4 socket, a sockaddr_in6 (IPv4-mapped for an IPv4
// address) on an IPv6 one — and returns its length, 0 if the socket cannot
// send to addr.
func putSockaddr(sa *[unix.SizeofSockaddrInet6]byte, family int, addr *net.UDPAddr) uint32 {
	port := uint16(addr.Port>>8) | uint16(addr.Port&0xff)<<8 // network order
	if family == unix.AF_INET {
		ip4 := addr.IP.To4()
		if ip4 == nil {
			return 0
		}
		rsa := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*rsa = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: port}
		copy(rsa.Addr[:], ip4)
		return unix.SizeofSockaddrInet4
	}
	ip16 := addr.IP.To16()
	if ip16 == nil {
		return 0
	}
	rsa := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	*rsa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port}
	copy(rsa.Addr[:], ip16)
	if addr.Zone != "" {
		if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
			rsa.Scope_id = uint32(ifi.Index)
		}
	}
	return unix.SizeofSockaddrInet6
}

// routineFlush is the flusher: it takes the queue each time it goes
// non-empty and sends it.
func (c *QUICConn) routineFlush() {
	defer close(c.finished)
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			c.mu.Lock()
			c.flush.q, c.fill = c.fill, c.flush.q
			c.mu.Unlock()
			c.sendQueue()
			return
		}
		c.mu.Lock()
		c.flush.q, c.fill = c.fill, c.flush.q
		c.room.Broadcast()
		c.mu.Unlock()
		c.sendQueue()
	}
}

// sendQueue sends the flusher's queue and empties it.
func (c *QUICConn) sendQueue() {
	f := &c.flush
	q := f.q
	stats.cl.flushes.Add(1)
	stats.cl.packets.Add(uint64(len(q.msgs)))
	for next := 0; next < len(q.msgs); {
		base := next
		next += f.pack(q, q.msgs[base:], c.gsoOn())
		for f.start = 0; f.start < f.n; {
			if err := c.rc.Write(f.sendFn); err != nil { // the socket is closed
				for i := f.start; i < f.n; i++ {
					stats.cl.dropped.Add(uint64(f.segs[i]))
				}
				f.start = f.n
				next = len(q.msgs)
				break
			}
			if f.errno == 0 {
				continue
			}
			if refused, _ := gsoRefused(f.errno); refused && f.segs[f.start] > 1 {
				// The kernel will not segment for this socket: GSO off
				// here for good, and this run and the rest sent again
				// without it.
				c.noGSO.Store(true)
				stats.cl.gsoRefusals.Add(1)
				next = base + f.first[f.start]
				break
			}
			// hdrs[start] failed alone: drop it (QUIC sees a loss) and go
			// on with the rest.
			stats.cl.dropped.Add(uint64(f.segs[f.start]))
			f.start++
		}
	}
	q.msgs = q.msgs[:0]
	q.arena = q.arena[:0]
}

func (c *QUICConn) gsoOn() bool { return !gsoDisabled.Load() && !c.noGSO.Load() }

// pack fills hdrs from msgs, at most IdealBatchSize messages, merging runs
// of packets for one address with the same control data and the same size
// (the last of a run may be shorter) into one GSO message when gso is set.
// It returns how many of msgs it took.
func (f *quicFlush) pack(q *quicQueue, msgs []quicMsg, gso bool) int {
	f.n = 0
	iov := 0
	used := 0
	for used < len(msgs) && f.n < len(f.hdrs) {
		m := &msgs[used]
		run := 1
		if gso && !hasUDPSegment(q.oob(m)) {
			size, total := m.n, m.n
			for used+run < len(msgs) && run < gsoMaxSegments {
				o := &msgs[used+run]
				if o.n > size || total+o.n > gsoMaxBytes || o.salen != m.salen || o.sa != m.sa || string(q.oob(o)) != string(q.oob(m)) {
					break
				}
				total += o.n
				run++
				if o.n < size {
					break // a shorter segment ends a GSO run
				}
			}
		}
		h := &f.hdrs[f.n].Hdr
		h.Name = &m.sa[0]
		h.Namelen = m.salen
		h.Iov = &f.iovs[iov]
		h.SetIovlen(run)
		for k := range run {
			o := &msgs[used+k]
			f.iovs[iov].Base = &q.arena[o.off]
			f.iovs[iov].SetLen(o.n)
			iov++
		}
		oob := q.oob(m)
		switch {
		case run > 1:
			ctrl := f.ctrl[f.n][:0]
			ctrl = append(ctrl, oob...)
			ctrl = appendUDPSegment(ctrl, uint16(m.n))
			h.Control = &ctrl[0]
			h.SetControllen(len(ctrl))
		case len(oob) > 0:
			h.Control = &oob[0]
			h.SetControllen(len(oob))
		default:
			h.Control = nil
			h.SetControllen(0)
		}
		f.segs[f.n] = uint8(run)
		f.first[f.n] = used
		if run > 1 {
			stats.cl.gsoSends.Add(1)
			stats.cl.gsoPackets.Add(uint64(run))
		}
		f.n++
		used += run
	}
	return used
}

// send is RawConn.Write's callback: one sendmmsg of hdrs[start:n].
func (f *quicFlush) send(fd uintptr) bool {
	if f.gsoFault != 0 && f.segs[f.start] > 1 {
		stats.cl.syscalls.Add(1)
		f.errno = f.gsoFault
		return true
	}
	for {
		stats.cl.syscalls.Add(1)
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&f.hdrs[f.start])), uintptr(f.n-f.start), 0, 0, 0)
		switch errno {
		case 0:
			f.start += int(r)
			f.errno = 0
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			f.errno = errno
		}
		return true
	}
}

func (q *quicQueue) oob(m *quicMsg) []byte { return q.arena[m.oobOff : m.oobOff+m.oobN] }

// appendOOB appends oob to b less a UDP_SEGMENT message whose segment size
// is at least n: quic-go, once GSO is on, marks every write with its
// maximum packet size, and a packet of n bytes is then one segment, free to
// join a run of others.
func appendOOB(b, oob []byte, n int) []byte {
	for len(oob) >= unix.SizeofCmsghdr {
		space := cmsgSpace(oob)
		if space == 0 {
			break
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_SEGMENT && h.Len >= uint64(unix.CmsgLen(2)) &&
			int(*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))) >= n {
			oob = oob[space:]
			continue
		}
		b = append(b, oob[:space]...)
		oob = oob[space:]
	}
	return append(b, oob...) // a malformed tail goes as it came
}

// hasUDPSegment reports whether the control data holds a UDP_SEGMENT
// message (quic-go's own GSO send).
func hasUDPSegment(oob []byte) bool {
	for len(oob) >= unix.SizeofCmsghdr {
		space := cmsgSpace(oob)
		if space == 0 {
			return false
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_SEGMENT {
			return true
		}
		oob = oob[space:]
	}
	return false
}

// cmsgSpace is the space the control message at the start of oob takes,
// its padding included, or 0 if oob does not hold a whole one.
func cmsgSpace(oob []byte) int {
	if len(oob) < unix.SizeofCmsghdr {
		return 0
	}
	l := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0])).Len
	if l < uint64(unix.CmsgLen(0)) || l > uint64(len(oob)) {
		return 0
	}
	return min(unix.CmsgSpace(int(l)-unix.CmsgLen(0)), len(oob))
}

// appendUDPSegment appends a UDP_SEGMENT control message for size.
func appendUDPSegment(b []byte, size uint16) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(2))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[start+unix.CmsgLen(0)])) = size
	return b
}

// WrapQUIC returns uc wrapped as a QUICConn.
func WrapQUIC(uc *net.UDPConn) (net.PacketConn, error) { return NewQUICConn(uc) }
