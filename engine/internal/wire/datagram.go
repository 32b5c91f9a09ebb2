package wire

import "github.com/quic-go/quic-go/quicvarint"

// HTTP/3 Datagram layout (RFC 9297 §2.1), carried in a QUIC DATAGRAM frame:
//
//	HTTP/3 Datagram {
//	  Quarter Stream ID (i),   // stream ID / 4, at most 2^60-1
//	  HTTP Datagram Payload (..),
//	}
//
// and for CONNECT-UDP (RFC 9298 §4) the payload is
//
//	UDP Proxying HTTP Datagram Payload {
//	  Context ID (i),          // 0: the rest is a UDP payload
//	  UDP Proxying Payload (..),
//	}

const (
	// MaxQuarterStreamID is the largest Quarter Stream ID a peer may send:
	// stream IDs are below 2^62, and a Quarter Stream ID above 2^60-1 is a
	// connection error of type H3_DATAGRAM_ERROR (RFC 9297 §2.1).
	MaxQuarterStreamID = 1<<60 - 1
	// MaxDatagramHeaderLen is the longest Quarter Stream ID plus Context ID:
	// two 8-byte varints. A sender that reads a UDP payload into
	// buf[MaxDatagramHeaderLen:] always has room for PutDatagramHeader.
	MaxDatagramHeaderLen = 16
)

// ParseDatagram splits an HTTP/3 Datagram (RFC 9297 §2.1) into the stream
// ID it belongs to (Quarter Stream ID * 4, so always a client-initiated
// bidirectional stream) and its HTTP Datagram Payload, which aliases b and,
// for CONNECT-UDP and CONNECT-IP, starts with the Context ID.
//
// Errors, both unwrapped sentinels: ErrTruncated when b is empty or ends
// inside the varint, ErrQuarterStreamIDTooLarge above MaxQuarterStreamID.
// The bad-input table of the design closes the connection with
// H3_DATAGRAM_ERROR for both. ParseDatagram does not allocate.
func ParseDatagram(b []byte) (streamID uint64, payload []byte, err error) {
	qsid, n, err := quicvarint.Parse(b)
	if err != nil {
		return 0, nil, ErrTruncated
	}
	if qsid > MaxQuarterStreamID {
		return 0, nil, ErrQuarterStreamIDTooLarge
	}
	return qsid * 4, b[n:], nil
}

// ParseContextID splits an HTTP Datagram Payload into its Context ID and the
// rest (RFC 9298 §4; RFC 9484 §6 uses the same layout). It fails with
// ErrTruncated when payload is empty or ends inside the varint; RFC 9298 §5
// has the receiver drop such a datagram. Which Context IDs are known (0 is
// the UDP payload; clients allocate even ones, proxies odd) is the caller's
// business. ParseContextID does not allocate.
func ParseContextID(payload []byte) (ctxID uint64, rest []byte, err error) {
	id, n, err := quicvarint.Parse(payload)
	if err != nil {
		return 0, nil, ErrTruncated
	}
	return id, payload[n:], nil
}

// DatagramHeaderLen returns the length of the Quarter Stream ID and Context
// ID that PutDatagramHeader and AppendDatagram write for streamID and
// contextID. It panics on an invalid stream ID (not a multiple of 4, or
// above 4*MaxQuarterStreamID) or a context ID above 2^62-1: those are
// bugs of the sender, never peer input.
func DatagramHeaderLen(streamID, contextID uint64) int {
	return quicvarint.Len(quarter(streamID)) + quicvarint.Len(contextID)
}

// PutDatagramHeader writes the Quarter Stream ID of streamID and then
// contextID so that they end exactly at buf[payloadOff], and returns the
// index where they start. A sender reads a UDP payload into
// buf[MaxDatagramHeaderLen:], calls
// PutDatagramHeader(buf, MaxDatagramHeaderLen, ...) and sends buf[start:]
// with no copy. It panics if the header does not fit before payloadOff, if
// payloadOff > len(buf), or on the invalid IDs that DatagramHeaderLen
// rejects. It does not allocate.
func PutDatagramHeader(buf []byte, payloadOff int, streamID, contextID uint64) (start int) {
	qsid := quarter(streamID)
	qn, cn := quicvarint.Len(qsid), quicvarint.Len(contextID)
	start = payloadOff - qn - cn
	if start < 0 || payloadOff > len(buf) {
		panic("wire: PutDatagramHeader: header does not fit before payloadOff")
	}
	putVarint(buf[start:], qsid, qn)
	putVarint(buf[start+qn:], contextID, cn)
	return start
}

// AppendDatagram appends an HTTP/3 Datagram for streamID carrying contextID
// and payload to b. It panics on the invalid IDs that DatagramHeaderLen
// rejects.
func AppendDatagram(b []byte, streamID, contextID uint64, payload []byte) []byte {
	b = quicvarint.Append(b, quarter(streamID))
	b = quicvarint.Append(b, contextID)
	return append(b, payload...)
}

// quarter returns the Quarter Stream ID of streamID, panicking if streamID
// is not a client-initiated bidirectional stream ID that a Quarter Stream ID
// can carry (RFC 9297 §2.1).
func quarter(streamID uint64) uint64 {
	if streamID&3 != 0 || streamID>>2 > MaxQuarterStreamID {
		panic("wire: stream ID is not a client-initiated bidirectional stream below 2^62")
	}
	return streamID >> 2
}
