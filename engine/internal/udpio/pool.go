package udpio

import "github.com/masqroute/masqroute/engine/internal/bufpool"

// Buffer sizes. A Buffer is Headroom bytes in front of up to MaxPayload
// bytes of datagram.
//
// Headroom is room for the HTTP Datagram header the proxy writes in front
// of a payload before handing it to QUIC: a quarter stream ID and a
// context ID, each a QUIC varint of at most 8 bytes (RFC 9297, RFC 9298).
//
// MaxPayload (2024) is above any datagram a QUIC connection over a
// 1500-byte path can carry, so a reply that does not fit in a Buffer could
// not be forwarded anyway: ReadBatch drops it as truncated. It is chosen
// so that a Buffer, its pool flag included, is exactly 2048 bytes, one of
// the allocator's size classes; a test checks it.
const (
	Headroom   = 16
	MaxPayload = 2024
)

// Buffer holds one datagram with Headroom bytes in front of it. Get one from
// a Pool and give it back with Put; a Buffer is owned by one goroutine at a
// time, and handing it on (over a channel, say) hands on its ownership.
type Buffer struct {
	data [Headroom + MaxPayload]byte
	// Flag is true while the Buffer is in a Pool (bufpool's double-put
	// check). Only the owner touches it, so a plain bool serves; two
	// goroutines that both think they own a Buffer race on it and the race
	// detector says so.
	bufpool.Flag
	_ [7]byte // pads a Buffer to 2048 bytes
}

// Payload returns the payload area, MaxPayload bytes long. Pass it to
// ReadBatch, or fill it before WriteBatch.
func (b *Buffer) Payload() []byte { return b.data[Headroom:] }

// Frame returns hdrLen bytes of headroom followed by the first n payload
// bytes, one contiguous slice: write the header into its first hdrLen bytes
// and send it whole. It panics if hdrLen > Headroom or n > MaxPayload.
func (b *Buffer) Frame(hdrLen, n int) []byte {
	return b.data[Headroom-hdrLen : Headroom+n]
}

// A Pool holds Buffers for reuse: Get one, give it back with Put. Put
// panics if the Buffer is already in a pool (a Buffer put twice would be
// handed to two owners, and one tunnel's datagrams could leave on
// another's); it does not zero the payload: every reader slices a Buffer to
// the size a receive just wrote, so stale bytes are never sent, and zeroing
// 2 KiB per datagram would cost more than the rest of the pool.
type Pool = bufpool.Pool[Buffer, *Buffer]
