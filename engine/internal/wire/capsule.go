package wire

import (
	"bufio"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// Capsule layout (RFC 9297 §3.2), on the request stream after a 2xx response
// that carries Capsule-Protocol: ?1:
//
//	Capsule {
//	  Capsule Type (i),
//	  Capsule Length (i),
//	  Capsule Value (..),
//	}

// Capsule types.
const (
	// CapsuleDatagram carries an HTTP Datagram Payload on the stream
	// (RFC 9297 §3.5), for paths where QUIC DATAGRAM frames are unavailable.
	CapsuleDatagram = 0x00
	// CONNECT-IP capsules (RFC 9484 §4.7).
	CapsuleAddressAssign      = 0x01
	CapsuleAddressRequest     = 0x02
	CapsuleRouteAdvertisement = 0x03
)

const (
	// DefaultMaxCapsuleValue is the largest capsule value a CapsuleReader
	// buffers when NewCapsuleReader is given maxValue <= 0.
	DefaultMaxCapsuleValue = 65536

	// capsuleReadBufSize is the read-ahead of a CapsuleReader. A proxy holds
	// one reader per tunnel, so it is kept small: a value larger than it is
	// read straight from the stream into the value buffer, past bufio.
	capsuleReadBufSize = 512
	// maxDiscardStep bounds one bufio.Discard call so that skipping a capsule
	// whose length does not fit an int on 32-bit platforms still works.
	maxDiscardStep = 1 << 30
)

// CapsuleReader reads the capsules of one stream (RFC 9297 §3.2) and returns
// those of the types its caller wants.
//
// Capsules of other types are skipped while streaming, whatever their
// length, and never buffered: RFC 9297 §3.2 has the receiver silently skip
// capsules of unknown type. Wanted capsules are buffered up to a maximum
// value size; the value buffer is reused and grows only to the largest
// wanted capsule seen, so Next does not allocate in steady state.
//
// A CapsuleReader reads ahead of the capsule it returns: once it is created,
// the caller must not read from the underlying reader. It is not safe for
// concurrent use. After Next returns an error it returns the same error
// forever.
type CapsuleReader struct {
	br       *bufio.Reader
	wanted   func(typ uint64) bool
	maxValue int
	buf      []byte // value of the last wanted capsule; reused
	err      error  // sticky
}

// NewCapsuleReader returns a reader of the capsules in r. maxValue bounds the
// value of a wanted capsule (<= 0 means DefaultMaxCapsuleValue); wanted
// chooses the capsule types Next returns (nil means all). wanted is called
// once per capsule, on the reader's goroutine.
//
// If r is already a *bufio.Reader it is used as is.
func NewCapsuleReader(r io.Reader, maxValue int, wanted func(typ uint64) bool) *CapsuleReader {
	if maxValue <= 0 {
		maxValue = DefaultMaxCapsuleValue
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, capsuleReadBufSize)
	}
	return &CapsuleReader{br: br, wanted: wanted, maxValue: maxValue}
}

// Next returns the type and value of the next wanted capsule. The value is
// valid only until the next call to Next; an empty value may be nil.
//
// Errors:
//   - io.EOF: the stream ended cleanly between two capsules.
//   - ErrMalformedCapsule, wrapping io.ErrUnexpectedEOF: the stream ended
//     inside a capsule's type, length or value (RFC 9297 §3.3).
//   - ErrCapsuleTooLarge: a wanted capsule's length is above the maximum.
//   - any other error of the underlying reader (a stream reset, a closed
//     connection), unchanged.
//
// For the first three the caller treats the capsule stream as malformed and
// resets the stream with H3_MESSAGE_ERROR (RFC 9297 §3.3).
func (c *CapsuleReader) Next() (typ uint64, value []byte, err error) {
	if c.err != nil {
		return 0, nil, c.err
	}
	typ, value, err = c.next()
	if err != nil {
		c.err = err
		return 0, nil, err
	}
	return typ, value, nil
}

func (c *CapsuleReader) next() (uint64, []byte, error) {
	for {
		typ, err := readVarint(c.br)
		if err != nil {
			// io.EOF here is the clean end between capsules.
			return 0, nil, c.streamErr(err)
		}
		length, err := readVarint(c.br)
		if err != nil {
			return 0, nil, c.streamErr(noEOF(err))
		}
		if c.wanted != nil && !c.wanted(typ) {
			if err := c.discard(length); err != nil {
				return 0, nil, err
			}
			continue
		}
		if length > uint64(c.maxValue) {
			return 0, nil, fmt.Errorf("%w: type %#x, length %d > %d", ErrCapsuleTooLarge, typ, length, c.maxValue)
		}
		n := int(length)
		if cap(c.buf) < n {
			// Grow geometrically, so a peer sending ever larger capsules
			// causes O(log maxValue) allocations, not one per capsule.
			c.buf = make([]byte, n, min(max(n, 2*cap(c.buf)), c.maxValue))
		}
		c.buf = c.buf[:n]
		if _, err := io.ReadFull(c.br, c.buf); err != nil {
			return 0, nil, c.streamErr(noEOF(err))
		}
		return typ, c.buf, nil
	}
}

// discard skips n bytes of an unwanted capsule's value through the read-ahead
// buffer, without buffering the value.
func (c *CapsuleReader) discard(n uint64) error {
	for n > 0 {
		step := min(n, maxDiscardStep)
		if _, err := c.br.Discard(int(step)); err != nil {
			return c.streamErr(noEOF(err))
		}
		n -= step
	}
	return nil
}

// streamErr turns an end of stream inside a capsule into ErrMalformedCapsule
// and passes io.EOF and every other read error through.
func (c *CapsuleReader) streamErr(err error) error {
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %w", ErrMalformedCapsule, err)
	}
	return err
}

// AppendCapsule appends a capsule of type typ with value to b (RFC 9297
// §3.2). It panics if typ is above 2^62-1.
func AppendCapsule(b []byte, typ uint64, value []byte) []byte {
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, uint64(len(value)))
	return append(b, value...)
}
