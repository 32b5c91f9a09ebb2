package h3

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// The peer's unidirectional streams (RFC 9114 §6.2), by stream type:
//
//   - control (§6.2.1): exactly one; a second is H3_STREAM_CREATION_ERROR.
//     wire.ControlStreamReader checks its frames; this file acts on them.
//     Its end, clean or not, is H3_CLOSED_CRITICAL_STREAM.
//   - push (§6.2.2): only servers push; from a client it is
//     H3_STREAM_CREATION_ERROR.
//   - QPACK encoder and decoder (RFC 9204 §4.2): at most one each, else
//     H3_STREAM_CREATION_ERROR; read and discarded, since this server
//     advertises no dynamic table and sends no field line that refers to
//     one; their end is H3_CLOSED_CRITICAL_STREAM.
//   - anything else, reserved types included: reading is aborted with
//     H3_STREAM_CREATION_ERROR (§6.2: "the recipient SHOULD use").
//
// Each stream gets its own goroutine because its type must be read first,
// and a peer may be slow to send it; quic-go's MaxIncomingUniStreams
// bounds how many there are.

// routineAcceptUniStreams accepts the peer's unidirectional streams until
// the connection closes.
func (c *Conn) routineAcceptUniStreams() {
	for {
		str, err := c.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		c.wg.Go(func() { c.routineUniStream(str) })
	}
}

func (c *Conn) routineUniStream(str *quic.ReceiveStream) {
	defer str.ReleaseStreamCredit()
	str.SetReadDeadline(c.headerDeadline())
	typ, err := wire.ReadStreamType(str)
	str.SetReadDeadline(time.Time{})
	if err != nil {
		// Ended or reset before its type: nothing to act on (§6.2).
		return
	}
	switch typ {
	case wire.StreamTypeControl:
		if !c.gotControl.CompareAndSwap(false, true) {
			c.closeWithError(connError(wire.ErrCodeStreamCreationError, "second control stream"))
			return
		}
		c.serveControlStream(str)
	case wire.StreamTypePush:
		c.closeWithError(connError(wire.ErrCodeStreamCreationError, "push stream from a client"))
	case wire.StreamTypeQPACKEncoder:
		c.discardQPACKStream(str, &c.gotQPACKEncoder, "QPACK encoder")
	case wire.StreamTypeQPACKDecoder:
		c.discardQPACKStream(str, &c.gotQPACKDecoder, "QPACK decoder")
	default:
		str.CancelRead(quicCode(wire.ErrCodeStreamCreationError))
	}
}

// discardQPACKStream reads a QPACK stream to its end, through io.Discard's
// pooled buffer.
func (c *Conn) discardQPACKStream(str *quic.ReceiveStream, seen *atomic.Bool, name string) {
	if !seen.CompareAndSwap(false, true) {
		c.closeWithError(connError(wire.ErrCodeStreamCreationError, "second %s stream", name))
		return
	}
	_, err := io.Copy(io.Discard, str)
	if peerClosed(err) {
		c.closeWithError(connError(wire.ErrCodeClosedCriticalStream, "%s stream closed", name))
	}
}

// peerClosed reports whether a read error of a critical stream means the
// peer ended or reset it (io.Copy's nil is the clean end), rather than
// that the connection is gone.
func peerClosed(err error) bool {
	var se *quic.StreamError
	return err == nil || err == io.EOF || err == io.ErrUnexpectedEOF || errors.As(err, &se)
}

// serveControlStream reads the peer's control stream until it fails; it
// never ends while the connection lives.
func (c *Conn) serveControlStream(str *quic.ReceiveStream) {
	r := wire.NewControlStreamReader(str, wire.RoleClient)
	var maxPushID uint64
	var hasMaxPushID bool
	for {
		f, err := r.Next()
		if err != nil {
			var h *wire.H3Error
			if !errors.As(err, &h) {
				h = connError(wire.ErrCodeInternalError, "control stream: %v", err)
			}
			if h.Code == wire.ErrCodeClosedCriticalStream && !peerClosed(h.Err) {
				return // the connection is closing
			}
			c.closeWithError(h)
			return
		}
		switch f.Type {
		case wire.FrameSettings:
			// RFC 9297 §2.1.1: H3_DATAGRAM=1 on a connection whose peer did
			// not send max_datagram_frame_size is H3_SETTINGS_ERROR.
			if f.Settings.Datagram && !c.qc.ConnectionState().SupportsDatagrams.Remote {
				c.closeWithError(connError(wire.ErrCodeSettingsError, "H3_DATAGRAM without QUIC datagrams"))
				return
			}
			c.peerSettings = *f.Settings
			close(c.peerSettingsDone) // publishes peerSettings
		case wire.FrameMaxPushID:
			maxPushID, hasMaxPushID = f.PushID, true
		case wire.FrameCancelPush:
			// RFC 9114 §7.2.3: a push ID above what the client allowed is
			// H3_ID_ERROR. This server never pushes, so a CANCEL_PUSH within
			// the limit names a push that never started: nothing to do.
			if !hasMaxPushID || f.PushID > maxPushID {
				c.closeWithError(connError(wire.ErrCodeIDError, "CANCEL_PUSH for push ID %d above MAX_PUSH_ID", f.PushID))
				return
			}
		case wire.FrameGoAway:
			// A client's GOAWAY names a push ID (RFC 9114 §5.2); without
			// pushes there is nothing to stop. The client opens no more
			// requests, and closes the connection when it is done.
			c.logger.Debug("h3: peer sent GOAWAY", "remote", c.remoteAddr, "id", f.GoAwayID)
		}
	}
}
