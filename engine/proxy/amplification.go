package proxy

import (
	"sync/atomic"
	"time"
)

// No amplification: per connection, over each one-second window, the wire
// bytes the proxy sends toward targets (UDP payload + 28 bytes of IPv4/UDP
// header, 48 for IPv6) stay within Config.MaxAmplification times the QUIC
// bytes it received from that client in the window (quic-go's
// ConnectionStats.BytesReceived, every packet: stream data with DATAGRAM
// capsules and DATAGRAM frames alike), plus Config.AmplificationAllowance,
// so that a quiet connection's first datagrams pass. What exceeds is
// dropped and counted as "amplification".
//
// Without it, a 3-byte DATAGRAM capsule (or a 3-byte QUIC DATAGRAM frame,
// many packed in one packet) becomes a 28-byte packet toward any target:
// about 9× in bytes and 100× in packets.
//
// Invariants and ownership:
//   - left is the bytes still allowed in the current window. Every
//     executor worker that runs one of the connection's tunnels takes from
//     it with one atomic add per batch (never per datagram, never a lock).
//   - Only the worker that wins refilling (a try-lock, never waited on)
//     reads the QUIC counters and credits left; a worker that loses drops
//     what it could not take, as if the budget were spent.
//   - windowEnd and rxSeen belong to the refilling holder.
//
// Windows are fixed, not sliding, and a window starts when a refill finds
// the previous one over, so a window can be longer than a second but never
// shorter: over any window, sent ≤ MaxAmplification × received + allowance,
// give or take one batch per worker racing the window's start.

// Defaults for the amplification bound.
const (
	DefaultMaxAmplification       = 3
	DefaultAmplificationAllowance = 64 << 10
	ampWindow                     = time.Second
)

// Wire overhead of one datagram toward a target: IP and UDP headers.
const (
	udpIPv4Overhead = 20 + 8
	udpIPv6Overhead = 40 + 8
)

// ampBudget bounds one connection's bytes toward targets; see the top of
// the file. A nil *ampBudget allows everything.
type ampBudget struct {
	left      atomic.Int64
	refilling atomic.Bool

	// Owned by the holder of refilling.
	windowEnd int64 // unix nanoseconds
	rxSeen    uint64

	factor    int64
	allowance int64
	received  func() uint64 // QUIC bytes received on the connection so far
}

func newAmpBudget(factor, allowance int64, received func() uint64) *ampBudget {
	b := &ampBudget{factor: factor, allowance: allowance, received: received}
	b.rxSeen = received()
	b.windowEnd = time.Now().UnixNano() + int64(ampWindow)
	b.left.Store(allowance)
	return b
}

// take reserves n wire bytes and reports whether they may be sent.
func (b *ampBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.left.Add(-n) >= 0 {
		return true
	}
	b.left.Add(n)
	return b.takeSlow(n)
}

// takeSlow credits what the client sent since the last refill, starting a
// new window if the current one is over, then tries again.
func (b *ampBudget) takeSlow(n int64) bool {
	if !b.refilling.CompareAndSwap(false, true) {
		return false // another worker is refilling: treat as spent
	}
	rx := b.received()
	credit := b.factor * int64(rx-b.rxSeen)
	b.rxSeen = rx
	if now := time.Now().UnixNano(); now >= b.windowEnd {
		b.windowEnd = now + int64(ampWindow)
		// A new window: what was left of the old one does not carry over.
		credit += b.allowance - b.left.Load()
	}
	b.left.Add(credit)
	b.refilling.Store(false) // publish windowEnd and rxSeen to the next refiller
	if b.left.Add(-n) >= 0 {
		return true
	}
	b.left.Add(n)
	return false
}

// udpOverhead is the wire overhead of a datagram to target's address family.
func udpOverhead(is4 bool) int64 {
	if is4 {
		return udpIPv4Overhead
	}
	return udpIPv6Overhead
}
