package wire

import (
	"bufio"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// The peer's control stream (RFC 9114 §6.2.1), after its stream type, is a
// sequence of frames:
//
//	SETTINGS ( GOAWAY | CANCEL_PUSH | MAX_PUSH_ID | unknown/reserved/PRIORITY_UPDATE )*
//
// and it never ends while the connection lives. ControlStreamReader checks
// that grammar and the rules on each frame, and turns every violation into
// the *H3Error the connection must be closed with.

// MaxSettingsFrameLen bounds the SETTINGS payload ControlStreamReader
// buffers. A larger frame is a connection error of type H3_EXCESSIVE_LOAD
// (RFC 9114 §8.1: "the peer is exhibiting a behavior that might be
// generating excessive load"); masqroute's own SETTINGS is a few bytes, and
// quic-go's whole frame is far below this.
const MaxSettingsFrameLen = 16 << 10

// controlReadBufSize is the read-ahead of a ControlStreamReader; there is
// one per connection and control frames are small.
const controlReadBufSize = 512

// Role is the role of the endpoint that sent a control stream.
type Role uint8

const (
	RoleClient Role = iota
	RoleServer
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ControlStreamReader reads the peer's HTTP/3 control stream (RFC 9114
// §6.2.1) and enforces:
//
//   - the first frame is SETTINGS, else H3_MISSING_SETTINGS (§6.2.1); a
//     second SETTINGS is H3_FRAME_UNEXPECTED (§7.2.4);
//   - DATA, HEADERS and PUSH_PROMISE are H3_FRAME_UNEXPECTED on a control
//     stream (§7.2.1, §7.2.2, §7.2.5), as are the HTTP/2 frame types 0x02,
//     0x06, 0x08, 0x09 anywhere (§7.2.8);
//   - GOAWAY, CANCEL_PUSH and MAX_PUSH_ID carry exactly one varint, else
//     H3_FRAME_ERROR (§7.1); GOAWAY identifiers never increase (§5.2) and
//     a server's are client-initiated bidirectional stream IDs (§7.2.6),
//     else H3_ID_ERROR; MAX_PUSH_ID comes only from a client, else
//     H3_FRAME_UNEXPECTED, and never decreases, else H3_ID_ERROR (§7.2.7);
//   - a SETTINGS payload above MaxSettingsFrameLen is H3_EXCESSIVE_LOAD,
//     and ParseSettings' rules apply to it;
//   - the stream ending, cleanly or not, or failing to read, is
//     H3_CLOSED_CRITICAL_STREAM (§6.2.1), with the read error as cause
//     (io.EOF between frames, io.ErrUnexpectedEOF inside one) — also when
//     it ends inside a frame, where §7.1 would otherwise say H3_FRAME_ERROR.
//
// Frames of unknown and reserved types (§9, §7.2.8), PRIORITY_UPDATE among
// them, are skipped while streaming, whatever their length, and counted.
// Whether a CANCEL_PUSH names a push ID this endpoint ever allowed is left
// to the caller: masqroute never pushes.
//
// It reads ahead: once created, the caller must not read the stream itself.
// It is not safe for concurrent use. Every error is an *H3Error, and after
// one Next returns it forever.
type ControlStreamReader struct {
	br   *bufio.Reader
	peer Role

	gotSettings bool
	hasGoAway   bool
	lastGoAway  uint64
	hasMaxPush  bool
	lastMaxPush uint64
	skipped     uint64
	err         error   // sticky
	idBuf       [8]byte // payload of GOAWAY, CANCEL_PUSH, MAX_PUSH_ID
}

// NewControlStreamReader returns a reader of the frames of a control stream
// that the peer, acting as peer, opened; r is positioned just after the
// stream type (see ReadStreamType). If r is already a *bufio.Reader it is
// used as is.
func NewControlStreamReader(r io.Reader, peer Role) *ControlStreamReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, controlReadBufSize)
	}
	return &ControlStreamReader{br: br, peer: peer}
}

// Skipped returns the number of unknown, reserved and PRIORITY_UPDATE frames
// skipped so far.
func (c *ControlStreamReader) Skipped() uint64 { return c.skipped }

// Next returns the next SETTINGS, GOAWAY, CANCEL_PUSH or MAX_PUSH_ID frame.
// It blocks until one arrives. The error is always an *H3Error.
func (c *ControlStreamReader) Next() (Frame, error) {
	if c.err != nil {
		return Frame{}, c.err
	}
	f, err := c.next()
	if err != nil {
		c.err = err
		return Frame{}, err
	}
	return f, nil
}

func (c *ControlStreamReader) next() (Frame, error) {
	for {
		typ, err := readVarint(c.br)
		if err != nil {
			return Frame{}, closedErr(err)
		}
		length, err := readVarint(c.br)
		if err != nil {
			return Frame{}, closedErr(noEOF(err))
		}
		if !c.gotSettings && typ != FrameSettings {
			return Frame{}, &H3Error{Code: ErrCodeMissingSettings, Reason: fmt.Sprintf("first control frame has type %#x, not SETTINGS", typ)}
		}

		switch {
		case typ == FrameSettings:
			if c.gotSettings {
				return Frame{}, h3Err(ErrCodeFrameUnexpected, "second SETTINGS frame")
			}
			if length > MaxSettingsFrameLen {
				return Frame{}, &H3Error{Code: ErrCodeExcessiveLoad, Reason: fmt.Sprintf("SETTINGS frame of %d bytes", length)}
			}
			payload := make([]byte, length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				return Frame{}, closedErr(noEOF(err))
			}
			s, err := ParseSettings(payload)
			if err != nil {
				return Frame{}, err
			}
			c.gotSettings = true
			return Frame{Type: typ, Settings: &s}, nil

		case typ == FrameData, typ == FrameHeaders, typ == FramePushPromise, isHTTP2FrameType(typ):
			return Frame{}, &H3Error{Code: ErrCodeFrameUnexpected, Reason: fmt.Sprintf("frame type %#x on the control stream", typ)}

		case typ == FrameGoAway:
			id, err := c.readID(typ, length)
			if err != nil {
				return Frame{}, err
			}
			if c.peer == RoleServer && id&3 != 0 {
				return Frame{}, &H3Error{Code: ErrCodeIDError, Reason: fmt.Sprintf("server GOAWAY with stream ID %d", id)}
			}
			if c.hasGoAway && id > c.lastGoAway {
				return Frame{}, &H3Error{Code: ErrCodeIDError, Reason: fmt.Sprintf("GOAWAY ID grew from %d to %d", c.lastGoAway, id)}
			}
			c.hasGoAway, c.lastGoAway = true, id
			return Frame{Type: typ, GoAwayID: id}, nil

		case typ == FrameCancelPush:
			id, err := c.readID(typ, length)
			if err != nil {
				return Frame{}, err
			}
			return Frame{Type: typ, PushID: id}, nil

		case typ == FrameMaxPushID:
			if c.peer == RoleServer {
				return Frame{}, h3Err(ErrCodeFrameUnexpected, "MAX_PUSH_ID from a server")
			}
			id, err := c.readID(typ, length)
			if err != nil {
				return Frame{}, err
			}
			if c.hasMaxPush && id < c.lastMaxPush {
				return Frame{}, &H3Error{Code: ErrCodeIDError, Reason: fmt.Sprintf("MAX_PUSH_ID fell from %d to %d", c.lastMaxPush, id)}
			}
			c.hasMaxPush, c.lastMaxPush = true, id
			return Frame{Type: typ, PushID: id}, nil

		default:
			// Unknown, reserved (0x1f*N+0x21) and PRIORITY_UPDATE frames:
			// RFC 9114 §9 has the receiver ignore them.
			if err := c.discard(length); err != nil {
				return Frame{}, err
			}
			c.skipped++
		}
	}
}

// readID reads a payload that must be exactly one varint (GOAWAY,
// CANCEL_PUSH, MAX_PUSH_ID). A length that cannot hold one varint exactly is
// rejected before anything is read.
func (c *ControlStreamReader) readID(typ, length uint64) (uint64, error) {
	if length == 0 || length > 8 {
		return 0, &H3Error{Code: ErrCodeFrameError, Reason: fmt.Sprintf("frame %#x of length %d", typ, length)}
	}
	b := c.idBuf[:length]
	if _, err := io.ReadFull(c.br, b); err != nil {
		return 0, closedErr(noEOF(err))
	}
	id, n, err := quicvarint.Parse(b)
	if err != nil || uint64(n) != length {
		return 0, &H3Error{Code: ErrCodeFrameError, Reason: fmt.Sprintf("frame %#x: length %d does not match its varint", typ, length)}
	}
	return id, nil
}

func (c *ControlStreamReader) discard(n uint64) error {
	for n > 0 {
		step := min(n, maxDiscardStep)
		if _, err := c.br.Discard(int(step)); err != nil {
			return closedErr(noEOF(err))
		}
		n -= step
	}
	return nil
}

func closedErr(err error) *H3Error {
	return &H3Error{Code: ErrCodeClosedCriticalStream, Reason: "control stream closed", Err: err}
}
