// Package wire holds every byte-level parser of masqroute that a peer can
// reach, and the matching encoders:
//
//   - HTTP Datagrams (RFC 9297 §2.1) and their CONNECT-UDP Context ID
//     (RFC 9298 §4): ParseDatagram, ParseContextID, PutDatagramHeader,
//     AppendDatagram. These sit on the per-datagram path and never allocate.
//   - The Capsule Protocol (RFC 9297 §3): CapsuleReader, AppendCapsule.
//   - The HTTP/3 control stream (RFC 9114 §6.2.1, §7.2): ReadStreamType,
//     ParseSettings, AppendSettingsFrame, ControlStreamReader, and the HTTP/3
//     error codes (RFC 9114 §8.1, RFC 9297 §5.2) as ErrorCode and *H3Error.
//
// Nothing here trusts a length read from the wire: values are bounded before
// they are buffered, unknown capsules and frames are skipped while streaming,
// and every error a peer can cause is typed (a sentinel for errors.Is, or an
// *H3Error carrying the connection error code the caller must close with).
// Each parser has a fuzz target in fuzz_test.go with seeds under
// testdata/fuzz.
package wire
