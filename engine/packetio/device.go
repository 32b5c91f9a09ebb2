package packetio

import (
	"errors"
	"fmt"
	"io"
	"net"
)

// A Device carries whole IP packets (IPv4 or IPv6, no link-layer header)
// between the proxy and the network behind it.
//
// Concurrency: one goroutine reads while any number of goroutines write;
// Close may be called at any time from any goroutine. ReadPackets must not be
// called concurrently with itself.
//
// Delivery: there is no delivery guarantee in either direction. A Device
// behaves like a network interface: packets it cannot deliver are dropped and
// counted in the backend's stats, never queued without bound.
type Device interface {
	// ReadPackets blocks until at least one packet arrives, then fills
	// bufs[i][:sizes[i]] for i < n with one packet each, in arrival order.
	// Every packet is an ordinary IP packet no larger than MTU(); offloads
	// never hand the caller a coalesced one.
	//
	// Pass BatchSize() buffers (fewer only means smaller batches; on the TUN
	// backend it can lose segments of an offloaded super-packet), each at
	// least MTU() bytes long, and len(sizes) >= len(bufs); otherwise
	// ReadPackets fails without consuming anything, with an error matching
	// io.ErrShortBuffer for a short buffer.
	//
	// After Close, ReadPackets returns an error matching net.ErrClosed; a
	// blocked call returns promptly. Packets still queued are discarded.
	ReadPackets(bufs [][]byte, sizes []int) (n int, err error)

	// WritePackets sends each of pkts, in order, as one packet into the
	// network. It does not retain pkts or modify their contents.
	//
	// It returns n == len(pkts) and a nil error when every packet was handed
	// to the network (which may still drop it, as a network does). Otherwise
	// pkts[n] was refused and pkts[n+1:] were not attempted: an error
	// matching net.ErrClosed means the device is closed; any other error
	// (ErrInvalidPacket, or one from the kernel) concerns pkts[n] alone and
	// the caller may go on with pkts[n+1:].
	//
	// WritePackets is safe for concurrent use.
	WritePackets(pkts [][]byte) (n int, err error)

	// MTU is the largest packet, in bytes, that ReadPackets can return and
	// that the network behind the device carries without fragmenting.
	MTU() int

	// BatchSize is the number of buffers a caller should pass to
	// ReadPackets. It does not change over the lifetime of a Device.
	BatchSize() int

	// Close unblocks ReadPackets, makes later calls fail with net.ErrClosed,
	// stops every goroutine the device started and frees its resources.
	// It is idempotent; calls after the first return nil.
	Close() error
}

const (
	// DefaultMTU is the MTU of the netstack and responder backends unless
	// configured otherwise.
	DefaultMTU = 1500

	// minMTU is the IPv6 minimum link MTU (RFC 8200, section 5); no backend
	// accepts less.
	minMTU = 1280

	// maxPacketSize is the largest packet an IPv4 total length or IPv6
	// payload length (plus header) can describe, jumbograms aside.
	maxPacketSize = 65535

	// idealBatchSize is the batch size of the queue-backed backends,
	// matching wireguard-go's conn.IdealBatchSize.
	idealBatchSize = 128
)

// ErrInvalidPacket is returned by WritePackets for a packet that is empty,
// longer than 65535 bytes, or whose version nibble is neither 4 nor 6.
var ErrInvalidPacket = errors.New("packetio: not an IPv4 or IPv6 packet")

// errClosed is what every backend returns after Close. net.ErrClosed rather
// than os.ErrClosed: the proxy treats a Device like a socket.
var errClosed = net.ErrClosed

// checkPacket reports whether p can be handed to a backend at all; what the
// network then does with it is the backend's business.
func checkPacket(p []byte) error {
	if len(p) == 0 || len(p) > maxPacketSize {
		return ErrInvalidPacket
	}
	if v := p[0] >> 4; v != 4 && v != 6 {
		return ErrInvalidPacket
	}
	return nil
}

// checkReadBufs checks ReadPackets' arguments against the contract in
// Device, for a device whose packets are at most mtu bytes long.
func checkReadBufs(bufs [][]byte, sizes []int, mtu int) error {
	if len(sizes) < len(bufs) {
		return fmt.Errorf("packetio: %d sizes for %d buffers", len(sizes), len(bufs))
	}
	for _, b := range bufs {
		if len(b) < mtu {
			return fmt.Errorf("packetio: read buffer of %d bytes, need %d: %w", len(b), mtu, io.ErrShortBuffer)
		}
	}
	return nil
}
