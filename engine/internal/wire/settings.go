package wire

import (
	"fmt"
	"slices"

	"github.com/quic-go/quic-go/quicvarint"
)

// SETTINGS frame payload (RFC 9114 §7.2.4):
//
//	Setting {
//	  Identifier (i),
//	  Value (i),
//	}
//	SETTINGS Frame {
//	  Type (i) = 0x04,
//	  Length (i),
//	  Setting (..) ...,
//	}

// Setting identifiers.
const (
	SettingQPACKMaxTableCapacity = 0x01 // RFC 9204 §5
	SettingMaxFieldSectionSize   = 0x06 // RFC 9114 §7.2.4.1
	SettingQPACKBlockedStreams   = 0x07 // RFC 9204 §5
	SettingEnableConnectProtocol = 0x08 // RFC 9220 §3
	SettingH3Datagram            = 0x33 // RFC 9297 §2.1.1
)

// MaxOtherSettings bounds Settings.Other: a peer may send any number of
// unknown or reserved identifiers, and ParseSettings keeps the first
// MaxOtherSettings of them.
const MaxOtherSettings = 16

// Setting is one identifier/value pair of a SETTINGS frame.
type Setting struct {
	ID, Value uint64
}

// Settings is the content of an HTTP/3 SETTINGS frame. Absent settings have
// their default values (RFC 9114 §7.2.4.2: a missing setting takes its
// default, which is 0 or "unlimited").
type Settings struct {
	// Datagram: SETTINGS_H3_DATAGRAM (0x33) = 1, the peer accepts HTTP/3
	// Datagrams (RFC 9297 §2.1.1).
	Datagram bool
	// ExtendedConnect: SETTINGS_ENABLE_CONNECT_PROTOCOL (0x08) = 1, the
	// peer accepts extended CONNECT (RFC 9220 §3, RFC 8441 §3).
	ExtendedConnect bool
	// MaxFieldSectionSize: SETTINGS_MAX_FIELD_SECTION_SIZE (0x06), valid
	// when HasMaxFieldSectionSize; absent, it is unlimited (RFC 9114
	// §7.2.4.1).
	MaxFieldSectionSize    uint64
	HasMaxFieldSectionSize bool
	// Other holds, in the order received, the first MaxOtherSettings
	// settings this package does not interpret: the QPACK settings (which
	// masqroute leaves to quic-go), extensions, and reserved identifiers
	// (RFC 9114 §7.2.4.1: unknown identifiers are ignored). OtherDropped
	// counts those beyond the bound.
	Other        []Setting
	OtherDropped int
}

// ParseSettings parses a SETTINGS frame payload (RFC 9114 §7.2.4). Errors
// are *H3Error:
//   - H3_FRAME_ERROR: the payload ends inside an identifier or a value
//     (RFC 9114 §7.1: a payload that ends before its fields do).
//   - H3_SETTINGS_ERROR: an identifier repeats (RFC 9114 §7.2.4: the
//     receiver MAY treat it so, and masqroute does); an HTTP/2 identifier with no HTTP/3
//     meaning, 0x00 or 0x02 to 0x05 (RFC 9114 §7.2.4.1); SETTINGS_H3_DATAGRAM
//     (RFC 9297 §2.1.1) or SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3,
//     via RFC 9220 §3) with a value other than 0 or 1.
//
// The payload is not bounded here; ControlStreamReader bounds it before it
// is read.
func ParseSettings(payload []byte) (Settings, error) {
	var s Settings
	var idStack [32]uint64
	ids := idStack[:0]
	for b := payload; len(b) > 0; {
		id, n, err := quicvarint.Parse(b)
		if err != nil {
			return Settings{}, h3Err(ErrCodeFrameError, "SETTINGS ends inside an identifier")
		}
		b = b[n:]
		val, n, err := quicvarint.Parse(b)
		if err != nil {
			return Settings{}, h3Err(ErrCodeFrameError, "SETTINGS ends inside a value")
		}
		b = b[n:]
		ids = append(ids, id)

		switch id {
		case 0x00, 0x02, 0x03, 0x04, 0x05:
			return Settings{}, &H3Error{Code: ErrCodeSettingsError, Reason: fmt.Sprintf("HTTP/2 setting %#x", id)}
		case SettingH3Datagram:
			if val > 1 {
				return Settings{}, &H3Error{Code: ErrCodeSettingsError, Reason: fmt.Sprintf("SETTINGS_H3_DATAGRAM = %d", val)}
			}
			s.Datagram = val == 1
		case SettingEnableConnectProtocol:
			if val > 1 {
				return Settings{}, &H3Error{Code: ErrCodeSettingsError, Reason: fmt.Sprintf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d", val)}
			}
			s.ExtendedConnect = val == 1
		case SettingMaxFieldSectionSize:
			s.MaxFieldSectionSize, s.HasMaxFieldSectionSize = val, true
		default:
			if s.Other == nil {
				// Each setting takes at least two bytes: size Other once.
				s.Other = make([]Setting, 0, min(MaxOtherSettings, 1+len(b)/2))
			}
			if len(s.Other) < MaxOtherSettings {
				s.Other = append(s.Other, Setting{ID: id, Value: val})
			} else {
				s.OtherDropped++
			}
		}
	}
	// Sorting finds duplicates in O(n log n); a 16 KiB payload holds up to
	// 8192 settings, too many for a pairwise check.
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return Settings{}, &H3Error{Code: ErrCodeSettingsError, Reason: fmt.Sprintf("duplicate setting %#x", ids[i])}
		}
	}
	return s, nil
}

// AppendSettingsFrame appends a SETTINGS frame (type and length included)
// carrying s to b. Settings with their default value (false, absent) are
// left out; Other is written in order. It panics if Other repeats an
// identifier or holds one that s has a field for, or an HTTP/2 one: a frame
// that ParseSettings would reject is a bug of the sender.
func AppendSettingsFrame(b []byte, s Settings) []byte {
	for i, o := range s.Other {
		switch o.ID {
		case 0x00, 0x02, 0x03, 0x04, 0x05, SettingMaxFieldSectionSize, SettingEnableConnectProtocol, SettingH3Datagram:
			panic(fmt.Sprintf("wire: AppendSettingsFrame: setting %#x in Other", o.ID))
		}
		for _, p := range s.Other[:i] {
			if p.ID == o.ID {
				panic(fmt.Sprintf("wire: AppendSettingsFrame: duplicate setting %#x", o.ID))
			}
		}
	}
	n := 0
	if s.Datagram {
		n += quicvarint.Len(SettingH3Datagram) + 1
	}
	if s.ExtendedConnect {
		n += quicvarint.Len(SettingEnableConnectProtocol) + 1
	}
	if s.HasMaxFieldSectionSize {
		n += quicvarint.Len(SettingMaxFieldSectionSize) + quicvarint.Len(s.MaxFieldSectionSize)
	}
	for _, o := range s.Other {
		n += quicvarint.Len(o.ID) + quicvarint.Len(o.Value)
	}

	b = quicvarint.Append(b, FrameSettings)
	b = quicvarint.Append(b, uint64(n))
	if s.Datagram {
		b = quicvarint.Append(b, SettingH3Datagram)
		b = quicvarint.Append(b, 1)
	}
	if s.ExtendedConnect {
		b = quicvarint.Append(b, SettingEnableConnectProtocol)
		b = quicvarint.Append(b, 1)
	}
	if s.HasMaxFieldSectionSize {
		b = quicvarint.Append(b, SettingMaxFieldSectionSize)
		b = quicvarint.Append(b, s.MaxFieldSectionSize)
	}
	for _, o := range s.Other {
		b = quicvarint.Append(b, o.ID)
		b = quicvarint.Append(b, o.Value)
	}
	return b
}
