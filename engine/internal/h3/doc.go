// Package h3 is masqroute's server side of HTTP/3 (RFC 9114) on top of
// quic-go's QUIC streams, with extended CONNECT (RFC 9220) and the
// SETTINGS of HTTP Datagrams (RFC 9297).
//
// It exists because quic-go's http3.Server cannot be used by a router
// that reads every datagram of a connection itself: once the peer's
// SETTINGS enable H3_DATAGRAM, http3 starts a goroutine that consumes
// them all, and its raw server connection keeps no handle on its control
// stream, so it can never send GOAWAY. A Conn never calls
// quic.Conn.ReceiveDatagram, and GoAway sends GOAWAY on the control
// stream it opened.
//
// Use: accept a *quic.Conn, call NewConn (which sends SETTINGS), then
// Serve on a goroutine of its own; Serve returns once the connection is
// closed and every handler has returned. Handlers are plain
// http.Handlers; RequestStream gives one the request's QUIC stream ID
// (to find its HTTP Datagrams) and the means to reset it. A CONNECT
// handler keeps its tunnel open for as long as it runs: it reads the
// peer's capsules (RFC 9297 §3) from r.Body and writes its own with
// w.Write and a Flush.
//
// What a peer's mistakes get (RFC 9114 §8, RFC 9204 §6):
//
//   - control stream and other unidirectional streams: control.go;
//   - frames on a request stream: frames.go and body.go, connection
//     errors H3_FRAME_UNEXPECTED and H3_FRAME_ERROR;
//   - field sections: headers.go; a malformed request (§4.1.2) is a stream
//     error H3_MESSAGE_ERROR, a QPACK failure the connection error
//     QPACK_DECOMPRESSION_FAILED, an oversize one a 431 answer.
//
// Not implemented: server push (never sent; a client's push stream is an
// error), QPACK's dynamic table (not advertised, so a peer may not use
// it), PRIORITY_UPDATE (skipped), 0-RTT (the caller's quic.Config decides;
// Conn does not wait for the handshake), Expect: 100-continue (a handler
// may send 100 itself), and a timeout for peers slow to send a request's
// HEADERS (quic-go's idle timeout and stream limits bound them).
package h3
