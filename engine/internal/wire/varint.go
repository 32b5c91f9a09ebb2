package wire

import (
	"bufio"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// Variable-length integers are QUIC's (RFC 9000 §16): the two high bits of
// the first byte give the length (1, 2, 4 or 8 bytes), the rest is the value,
// big-endian, up to 2^62-1. Encodings need not be minimal, so a parser
// accepts any of them; every encoder here writes the shortest.

// putVarint writes v into b[:n] using exactly n bytes. n must be one of
// 1, 2, 4, 8 and at least quicvarint.Len(v).
func putVarint(b []byte, v uint64, n int) {
	switch n {
	case 1:
		b[0] = byte(v)
	case 2:
		_ = b[1]
		b[0] = byte(v>>8) | 0x40
		b[1] = byte(v)
	case 4:
		_ = b[3]
		b[0] = byte(v>>24) | 0x80
		b[1] = byte(v >> 16)
		b[2] = byte(v >> 8)
		b[3] = byte(v)
	default:
		_ = b[7]
		b[0] = byte(v>>56) | 0xc0
		b[1] = byte(v >> 48)
		b[2] = byte(v >> 40)
		b[3] = byte(v >> 32)
		b[4] = byte(v >> 24)
		b[5] = byte(v >> 16)
		b[6] = byte(v >> 8)
		b[7] = byte(v)
	}
}

// readVarint reads one varint from br. A clean end before its first byte is
// io.EOF; an end inside it is io.ErrUnexpectedEOF; other read errors pass
// through.
func readVarint(br *bufio.Reader) (uint64, error) {
	first, err := br.ReadByte()
	if err != nil {
		return 0, err
	}
	n := 1 << (first >> 6)
	v := uint64(first & 0x3f)
	for i := 1; i < n; i++ {
		c, err := br.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// ReadStreamType reads the stream type that opens an HTTP/3 unidirectional
// stream (RFC 9114 §6.2). It reads exactly the varint and nothing after it
// (one Read of one byte, then at most one io.ReadFull of up to seven), so r
// can be handed on, for instance to NewControlStreamReader. A stream that
// ends before the first byte gives io.EOF, inside the varint
// io.ErrUnexpectedEOF. Stream types: StreamTypeControl and friends; reserved
// types (IsReserved) and unknown ones must be ignored by the caller, which
// may abort reading them (RFC 9114 §6.2, §9).
func ReadStreamType(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return 0, err
	}
	n := 1 << (b[0] >> 6)
	if n > 1 {
		if _, err := io.ReadFull(r, b[1:n]); err != nil {
			return 0, noEOF(err)
		}
	}
	v, _, _ := quicvarint.Parse(b[:n])
	return v, nil
}

// IsReserved reports whether v has the form 0x1f*N+0x21, the values reserved
// for greasing among stream types (RFC 9114 §6.2.3), frame types (§7.2.8),
// setting identifiers (§7.2.4.1) and error codes (§8.1). A receiver ignores
// them like any unknown value.
func IsReserved(v uint64) bool {
	return v >= 0x21 && (v-0x21)%0x1f == 0
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
