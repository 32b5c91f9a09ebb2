package loadgen

import (
	"encoding/binary"
	"time"
)

// HeaderLen is the size of the header each datagram starts with; Size must
// be at least this.
const HeaderLen = 24

// header is what a datagram carries to be matched with its reply.
//
//	[0:4)   tag: the run's random tag; replies with another tag are strays
//	[4:8)   tunnel index
//	[8:16)  sequence number within the tunnel
//	[16:24) send time: nanoseconds since the run started (monotonic)
type header struct {
	tag    uint32
	tunnel uint32
	seq    uint64
	sent   time.Duration
}

func (h *header) put(b []byte) {
	_ = b[HeaderLen-1]
	binary.BigEndian.PutUint32(b[0:], h.tag)
	binary.BigEndian.PutUint32(b[4:], h.tunnel)
	binary.BigEndian.PutUint64(b[8:], h.seq)
	binary.BigEndian.PutUint64(b[16:], uint64(h.sent))
}

// parseHeader reads b's header; ok is false when b is too short.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < HeaderLen {
		return h, false
	}
	h.tag = binary.BigEndian.Uint32(b[0:])
	h.tunnel = binary.BigEndian.Uint32(b[4:])
	h.seq = binary.BigEndian.Uint64(b[8:])
	h.sent = time.Duration(binary.BigEndian.Uint64(b[16:]))
	return h, true
}
