package h3

import (
	"io"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// HTTP/3 frames (RFC 9114 §7.1) on a request stream:
//
//	HTTP/3 Frame Format {
//	  Type (i),
//	  Length (i),
//	  Frame Payload (..),
//	}
//
// frameReader reads them straight from the QUIC stream, with no read-ahead
// buffer: a proxy holds one request stream per tunnel, and a per-stream
// buffer would cost memory for every idle tunnel. A frame header costs two
// or three small stream reads; DATA payloads are read into the caller's
// buffer directly.

// frameReader reads frame headers from a request stream and classifies the
// frame types a client may send on it. It is not safe for concurrent use.
type frameReader struct {
	r io.Reader
	b [8]byte // scratch for one varint; keeps readVarint allocation-free
}

// readVarint reads one QUIC varint (RFC 9000 §16), consuming exactly its
// bytes. A clean end before the first byte is io.EOF; an end inside it is
// io.ErrUnexpectedEOF.
func (f *frameReader) readVarint() (uint64, error) {
	if _, err := io.ReadFull(f.r, f.b[:1]); err != nil {
		return 0, err
	}
	n := 1 << (f.b[0] >> 6)
	if n > 1 {
		if _, err := io.ReadFull(f.r, f.b[1:n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	v, _, _ := quicvarint.Parse(f.b[:n])
	return v, nil
}

// next returns the type and payload length of the next DATA or HEADERS
// frame; its payload is the next thing to read. Frames of unknown and
// reserved types are skipped without buffering (RFC 9114 §9, §7.2.8).
//
// Errors:
//   - io.EOF: the stream ended cleanly between two frames.
//   - *wire.H3Error H3_FRAME_ERROR: the stream ended inside a frame (§7.1).
//   - *wire.H3Error H3_FRAME_UNEXPECTED: a frame that is never allowed on a
//     request stream from a client: CANCEL_PUSH, SETTINGS, GOAWAY and
//     MAX_PUSH_ID (§7.2.3, §7.2.4, §7.2.6, §7.2.7), PUSH_PROMISE (§7.2.5),
//     the HTTP/2 types 0x02, 0x06, 0x08, 0x09 (§7.2.8), PRIORITY_UPDATE
//     (RFC 9218 §7.1: only on the control stream).
//   - any read error of the stream (a reset, a closed connection).
func (f *frameReader) next() (typ, length uint64, err error) {
	for {
		typ, err := f.readVarint()
		if err != nil {
			if err == io.EOF {
				return 0, 0, io.EOF
			}
			return 0, 0, truncated(err)
		}
		length, err := f.readVarint()
		if err != nil {
			return 0, 0, truncated(err)
		}
		switch typ {
		case wire.FrameData, wire.FrameHeaders:
			return typ, length, nil
		case wire.FrameCancelPush, wire.FrameSettings, wire.FramePushPromise, wire.FrameGoAway, wire.FrameMaxPushID,
			0x02, 0x06, 0x08, 0x09,
			wire.FramePriorityUpdateRequest, wire.FramePriorityUpdatePush:
			return 0, 0, connError(wire.ErrCodeFrameUnexpected, "frame type %#x on a request stream", typ)
		}
		if err := f.discard(length); err != nil {
			return 0, 0, err
		}
	}
}

// discard skips n payload bytes. io.Discard's ReadFrom reads through a
// pooled buffer, so skipping a frame of any length buffers nothing here.
func (f *frameReader) discard(n uint64) error {
	// Lengths are varints, below 2^62, so they fit an int64.
	if _, err := io.CopyN(io.Discard, f.r, int64(n)); err != nil {
		return truncated(err)
	}
	return nil
}

// readPayload reads a frame payload of length n (already bounded by the
// caller) in full.
func (f *frameReader) readPayload(n uint64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(f.r, b); err != nil {
		return nil, truncated(err)
	}
	return b, nil
}

// appendFrameHeader appends the type and length of a frame to b.
func appendFrameHeader(b []byte, typ uint64, length uint64) []byte {
	b = quicvarint.Append(b, typ)
	return quicvarint.Append(b, length)
}

// appendGoAway appends a GOAWAY frame (RFC 9114 §7.2.6) carrying id.
func appendGoAway(b []byte, id uint64) []byte {
	b = appendFrameHeader(b, wire.FrameGoAway, uint64(quicvarint.Len(id)))
	return quicvarint.Append(b, id)
}
