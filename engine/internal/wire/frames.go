package wire

// HTTP/3 frame layout (RFC 9114 §7.1):
//
//	HTTP/3 Frame Format {
//	  Type (i),
//	  Length (i),
//	  Frame Payload (..),
//	}

// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2), read with
// ReadStreamType.
const (
	StreamTypeControl      = 0x00
	StreamTypePush         = 0x01
	StreamTypeQPACKEncoder = 0x02
	StreamTypeQPACKDecoder = 0x03
)

// Frame types (RFC 9114 §7.2, §11.2.1; RFC 9218 §7.1).
const (
	FrameData        = 0x00
	FrameHeaders     = 0x01
	FrameCancelPush  = 0x03
	FrameSettings    = 0x04
	FramePushPromise = 0x05
	FrameGoAway      = 0x07
	FrameMaxPushID   = 0x0d
	// PRIORITY_UPDATE (RFC 9218 §7.1). masqroute does not implement
	// extensible priorities, so ControlStreamReader skips these like any
	// unknown frame.
	FramePriorityUpdateRequest = 0xf0700
	FramePriorityUpdatePush    = 0xf0701
)

// isHTTP2FrameType reports whether typ is one of the frame types of HTTP/2
// that HTTP/3 reserves and forbids (RFC 9114 §7.2.8, §11.2.1): PRIORITY,
// PING, WINDOW_UPDATE and CONTINUATION.
func isHTTP2FrameType(typ uint64) bool {
	switch typ {
	case 0x02, 0x06, 0x08, 0x09:
		return true
	}
	return false
}

// Frame is one frame of the peer's control stream that ControlStreamReader
// returns: SETTINGS, GOAWAY, CANCEL_PUSH or MAX_PUSH_ID.
type Frame struct {
	Type uint64
	// Settings is set for FrameSettings.
	Settings *Settings
	// GoAwayID is the GOAWAY identifier for FrameGoAway: a client-initiated
	// bidirectional stream ID from a server, a push ID from a client
	// (RFC 9114 §5.2, §7.2.6).
	GoAwayID uint64
	// PushID is set for FrameCancelPush and FrameMaxPushID (RFC 9114
	// §7.2.3, §7.2.7).
	PushID uint64
}
