package client

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// A TCPConn is one CONNECT (TCP) tunnel (RFC 9114 §4.4): a byte stream to
// its target through the proxy, on one request stream of the connection.
// It implements net.Conn; CloseWrite half-closes it as on a TCP socket
// (the proxy passes the FIN on to the target), and Read returns io.EOF once
// the target has closed its side. One goroutine may Read while another
// Writes.
type TCPConn struct {
	c      *Conn
	str    *http3.RequestStream
	target string

	closeOnce sync.Once
}

// DialTCP opens a TCP tunnel to target ("host:port"; host a name or an IP
// literal) through the proxy, which must have CONNECT for TCP enabled.
func (c *Conn) DialTCP(ctx context.Context, target string) (*TCPConn, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("masqroute client: target %q: %w", target, err)
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
	req = req.WithContext(ctx)
	if err := str.SendRequestHeader(req); err != nil {
		return fail(fmt.Errorf("masqroute client: send request: %w", err))
	}
	resp, err := str.ReadResponse()
	if err != nil {
		return fail(fmt.Errorf("masqroute client: read response: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail(&ProxyError{Status: resp.StatusCode, ProxyStatus: resp.Header.Get("Proxy-Status")})
	}
	return &TCPConn{c: c, str: str, target: target}, nil
}

// StreamID is the tunnel's request stream.
func (t *TCPConn) StreamID() uint64 { return uint64(t.str.StreamID()) }

// Read reads the target's bytes; io.EOF once the target closed its side.
func (t *TCPConn) Read(b []byte) (int, error) { return t.str.Read(b) }

// Write sends bytes to the target. It blocks while QUIC flow control holds
// them back.
func (t *TCPConn) Write(b []byte) (int, error) { return t.str.Write(b) }

// CloseWrite ends the bytes toward the target: the proxy half-closes its
// TCP connection. Reading goes on.
func (t *TCPConn) CloseWrite() error { return t.str.Close() }

// Close ends both directions. A Close before CloseWrite, or before the
// target's EOF was read, resets the stream, which the proxy passes on by
// closing its TCP connection.
func (t *TCPConn) Close() error {
	t.closeOnce.Do(func() {
		t.str.CancelRead(quic.StreamErrorCode(wire.ErrCodeNoError))
		t.str.Close()
	})
	return nil
}

// LocalAddr is the QUIC connection's local address.
func (t *TCPConn) LocalAddr() net.Addr { return t.c.qc.LocalAddr() }

// RemoteAddr is the target, as given to DialTCP.
func (t *TCPConn) RemoteAddr() net.Addr { return tcpNameAddr(t.target) }

func (t *TCPConn) SetDeadline(d time.Time) error      { return t.str.SetDeadline(d) }
func (t *TCPConn) SetReadDeadline(d time.Time) error  { return t.str.SetReadDeadline(d) }
func (t *TCPConn) SetWriteDeadline(d time.Time) error { return t.str.SetWriteDeadline(d) }

type tcpNameAddr string

func (tcpNameAddr) Network() string  { return "tcp" }
func (a tcpNameAddr) String() string { return string(a) }
