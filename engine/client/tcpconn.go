package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A TCPConn is one CONNECT (TCP) tunnel (RFC 9114 §4.4 over HTTP/3, RFC
// 9113 §8.5 over HTTP/2): a byte stream to its target through the proxy, on
// one request stream of the connection. It implements net.Conn; CloseWrite
// half-closes it as on a TCP socket (the proxy passes the FIN on to the
// target), and Read returns io.EOF once the target has closed its side. One
// goroutine may Read while another Writes.
//
// Over HTTP/2 the target's FIN ends the tunnel both ways (the proxy's
// HTTP/2 server cannot end its response and go on reading), and a deadline
// that passes ends the tunnel: Read and Write then fail with
// os.ErrDeadlineExceeded for good.
type TCPConn struct {
	c      *Conn
	str    byteStream
	id     uint64
	target string

	closeOnce sync.Once
}

// A byteStream is a TCPConn's request stream on its carrier.
type byteStream interface {
	io.ReadWriter
	// CloseWrite ends the bytes toward the target (FIN, END_STREAM).
	CloseWrite() error
	// Close resets what is still open.
	Close() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// DialTCP opens a TCP tunnel to target ("host:port"; host a name or an IP
// literal) through the proxy, which must have CONNECT for TCP enabled. It
// needs HTTP/3 or HTTP/2 (CarrierH1 has no CONNECT).
func (c *Conn) DialTCP(ctx context.Context, target string) (*TCPConn, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("masqroute client: target %q: %w", target, err)
	}
	// Classic CONNECT: :method and :authority only, no :protocol.
	req := &http.Request{
		Method: http.MethodConnect,
		Host:   target,
		URL:    &url.URL{Host: target},
		Header: http.Header{},
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.tcp != nil {
		str, id, err := c.tcp.connect(ctx, req)
		if err != nil {
			return nil, err
		}
		return &TCPConn{c: c, str: str, id: id, target: target}, nil
	}
	str, err := c.h3.OpenRequestStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("masqroute client: open stream: %w", err)
	}
	fail := func(err error) (*TCPConn, error) {
		str.CancelRead(quic.StreamErrorCode(wire.ErrCodeRequestCancelled))
		str.CancelWrite(quic.StreamErrorCode(wire.ErrCodeRequestCancelled))
		return nil, err
	}
	if err := str.SendRequestHeader(req.WithContext(ctx)); err != nil {
		return fail(fmt.Errorf("masqroute client: send request: %w", err))
	}
	resp, err := str.ReadResponse()
	if err != nil {
		return fail(fmt.Errorf("masqroute client: read response: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail(&ProxyError{Status: resp.StatusCode, ProxyStatus: resp.Header.Get("Proxy-Status")})
	}
	return &TCPConn{c: c, str: h3ByteStream{str}, id: uint64(str.StreamID()), target: target}, nil
}

// StreamID is the tunnel's request stream.
func (t *TCPConn) StreamID() uint64 { return t.id }

// Read reads the target's bytes; io.EOF once the target closed its side.
func (t *TCPConn) Read(b []byte) (int, error) { return t.str.Read(b) }

// Write sends bytes to the target. It blocks while flow control holds them
// back.
func (t *TCPConn) Write(b []byte) (int, error) { return t.str.Write(b) }

// CloseWrite ends the bytes toward the target: the proxy half-closes its
// TCP connection. Reading goes on.
func (t *TCPConn) CloseWrite() error { return t.str.CloseWrite() }

// Close ends both directions. A Close before CloseWrite, or before the
// target's EOF was read, resets the stream, which the proxy passes on by
// closing its TCP connection.
func (t *TCPConn) Close() error {
	t.closeOnce.Do(func() { t.str.Close() })
	return nil
}

// LocalAddr is the connection's local address (QUIC's, or the TCP
// connection's under HTTP/2).
func (t *TCPConn) LocalAddr() net.Addr {
	if t.c.tcp != nil {
		return t.c.tcp.nc.LocalAddr()
	}
	return t.c.qc.LocalAddr()
}

// RemoteAddr is the target, as given to DialTCP.
func (t *TCPConn) RemoteAddr() net.Addr { return tcpNameAddr(t.target) }

func (t *TCPConn) SetDeadline(d time.Time) error {
	return errors.Join(t.str.SetReadDeadline(d), t.str.SetWriteDeadline(d))
}
func (t *TCPConn) SetReadDeadline(d time.Time) error  { return t.str.SetReadDeadline(d) }
func (t *TCPConn) SetWriteDeadline(d time.Time) error { return t.str.SetWriteDeadline(d) }

type tcpNameAddr string

func (tcpNameAddr) Network() string  { return "tcp" }
func (a tcpNameAddr) String() string { return string(a) }

// h3ByteStream is an HTTP/3 request stream as a byteStream.
type h3ByteStream struct{ *http3.RequestStream }

func (s h3ByteStream) CloseWrite() error { return s.RequestStream.Close() }

func (s h3ByteStream) Close() error {
	s.CancelRead(quic.StreamErrorCode(wire.ErrCodeNoError))
	return s.RequestStream.Close()
}
