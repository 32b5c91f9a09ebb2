package packetio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
)

// TUN offloads, and what this backend does about them.
//
// wireguard-go's tun.CreateTUN opens the device with IFF_VNET_HDR and turns
// on TSO (TUN_F_CSUM|TSO4|TSO6) and, from Linux 6.2, USO. Every read and
// write then carries a 10-byte virtio_net_hdr in front of the packet, which
// wireguard-go handles:
//
//   - Read: the kernel may hand over a TCP or UDP "super-packet" of up to
//     64 KiB with a GSO header, or a packet whose checksum is left for the
//     reader to finish. wireguard-go splits the super-packet into ordinary
//     packets, one per buffer, and completes the checksums, so one read can
//     return dozens of packets (hence BatchSize 128). When the caller passed
//     too few buffers it fails with tun.ErrTooManySegments and the rest of
//     the super-packet is lost; ReadPackets counts that in SegmentDrops and
//     returns what was split. Reads go through wireguard-go's own 64 KiB
//     buffer, so ReadPackets passes offset 0 and the caller's buffers are
//     filled directly.
//   - Write: given several packets in one call, wireguard-go coalesces TCP
//     and UDP packets of one flow into a super-packet (GRO), rewriting the
//     first packet of the flow in place and writing the virtio header into
//     the offset bytes of headroom in front of it. The proxy must hand the
//     kernel each client packet as it came, so WritePackets never
//     coalesces: it copies each packet behind tunHeadroom bytes of headroom
//     in a private buffer and writes it alone. A lone packet gets an
//     all-zero virtio header and reaches the kernel unchanged, and the
//     caller's buffers are neither retained nor modified. The price is one
//     write(2) per packet where coalescing would need one per flow and
//     batch, plus a copy of each packet.
//
// Offloads stay on rather than off (opening /dev/net/tun without
// IFF_VNET_HDR) because the read side is where they pay: without them the
// kernel segments in software and every packet costs a read(2); with them
// one read returns a whole super-packet's worth (48 packets in
// TestTUNBridgeKernelTCPToNetstack).

// tunHeadroom is the headroom in front of each written packet; wireguard-go
// needs at least its unexported virtioNetHdrLen (10) when IFF_VNET_HDR is on.
// 16 is what wireguard-go's own device passes (MessageTransportHeaderSize).
const tunHeadroom = 16

// TUN is a Device backed by a Linux TUN interface (wireguard-go's
// tun.CreateTUN). OpenTUN creates the interface; addresses, routes and the
// link state are for the operator (or the caller) to configure, and
// WritePackets fails with EIO while the link is down.
//
// Kernel offloads stay enabled for reads: coalesced TCP and UDP
// super-packets are split back into ordinary packets before ReadPackets
// returns them. Writes are never coalesced; each packet reaches the kernel
// as it was given. Reading and writing allocate nothing.
type TUN struct {
	dev  tun.Device
	name string
	mtu  int

	writeMu sync.Mutex // guards wbuf
	wbuf    []byte     // tunHeadroom + maxPacketSize
	wbufs   [1][]byte

	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	eventsDone chan struct{}

	written      atomic.Uint64
	writeErrors  atomic.Uint64
	read         atomic.Uint64
	segmentDrops atomic.Uint64
	readErrors   atomic.Uint64
}

var _ Device = (*TUN)(nil)

// OpenTUN creates (or attaches to) the TUN interface name, which may be a
// kernel template such as "mq%d", and sets its MTU. It needs CAP_NET_ADMIN
// and /dev/net/tun.
func OpenTUN(name string, mtu int) (*TUN, error) {
	if mtu < minMTU || mtu > maxPacketSize {
		return nil, fmt.Errorf("packetio: TUN MTU %d outside [%d, %d]", mtu, minMTU, maxPacketSize)
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("packetio: open TUN %q: %w", name, err)
	}
	realName, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("packetio: TUN name: %w", err)
	}
	t := &TUN{
		dev:        dev,
		name:       realName,
		mtu:        mtu,
		wbuf:       make([]byte, tunHeadroom+maxPacketSize),
		eventsDone: make(chan struct{}),
	}
	go t.routineEvents()
	return t, nil
}

// Name is the interface's name as the kernel knows it.
func (t *TUN) Name() string { return t.name }

// MTU implements Device: the MTU OpenTUN set. Raising the interface's MTU
// behind the device's back is not supported: larger packets then fail
// ReadPackets with an error and are lost.
func (t *TUN) MTU() int { return t.mtu }

// BatchSize implements Device: 128 with offloads on, 1 without.
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

// Stats returns t's counters.
func (t *TUN) Stats() TUNStats {
	return TUNStats{
		Written:      t.written.Load(),
		WriteErrors:  t.writeErrors.Load(),
		Read:         t.read.Load(),
		SegmentDrops: t.segmentDrops.Load(),
		ReadErrors:   t.readErrors.Load(),
	}
}

// ReadPackets implements Device.
func (t *TUN) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	if t.closed.Load() {
		return 0, errClosed
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	if err := checkReadBufs(bufs, sizes, t.mtu); err != nil {
		return 0, err
	}
	for {
		n, err := t.dev.Read(bufs, sizes, 0)
		if errors.Is(err, tun.ErrTooManySegments) {
			// What was split is valid; the rest of the super-packet is lost.
			t.segmentDrops.Add(1)
			err = nil
			if n <= 0 {
				continue
			}
		}
		if err != nil {
			if t.closed.Load() || errors.Is(err, os.ErrClosed) {
				return 0, errClosed
			}
			t.readErrors.Add(1)
			return 0, fmt.Errorf("packetio: TUN read: %w", err)
		}
		t.read.Add(uint64(n))
		return n, nil
	}
}

// WritePackets implements Device, one write(2) per packet; see the comment
// on offloads above.
func (t *TUN) WritePackets(pkts [][]byte) (int, error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	for i, p := range pkts {
		if t.closed.Load() {
			return i, errClosed
		}
		if err := checkPacket(p); err != nil {
			t.writeErrors.Add(1)
			return i, err
		}
		k := copy(t.wbuf[tunHeadroom:], p)
		t.wbufs[0] = t.wbuf[:tunHeadroom+k]
		if _, err := t.dev.Write(t.wbufs[:], tunHeadroom); err != nil {
			if t.closed.Load() || errors.Is(err, os.ErrClosed) {
				return i, errClosed
			}
			t.writeErrors.Add(1)
			return i, fmt.Errorf("packetio: TUN write: %w", err)
		}
		t.written.Add(1)
	}
	return len(pkts), nil
}

// Close implements Device. It closes the interface's file descriptor, which
// removes the interface unless it was made persistent.
func (t *TUN) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true) // publishes "closed" before the fd goes away
		// Closing the device wakes a blocked Read and stops wireguard-go's
		// netlink and link-status goroutines; the last of them to exit
		// closes the events channel, which ends routineEvents.
		t.closeErr = t.dev.Close()
		<-t.eventsDone
	})
	return t.closeErr
}

// routineEvents drains the device's events until wireguard-go closes the
// channel. Without a reader its goroutines block on the full channel and
// never exit. Link up/down and MTU events are of no use to the proxy.
func (t *TUN) routineEvents() {
	defer close(t.eventsDone)
	for range t.dev.Events() {
	}
}
