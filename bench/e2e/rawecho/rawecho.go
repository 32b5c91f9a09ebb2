// Package rawecho is a QUIC datagram echo server: every datagram (RFC 9221)
// a client sends is sent back on the same connection. There is no HTTP/3,
// no proxy and no UDP hop behind it, so it is the ceiling a MASQUE proxy
// built on quic-go is measured against: what quic-go alone carries on this
// machine.
package rawecho

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// ALPN is the protocol the server speaks and its clients must offer.
const ALPN = "masqroute-rawecho"

// A Server echoes QUIC datagrams. Each connection has one goroutine
// (RoutineEcho): receive, send back. quic-go's receive queue (128
// datagrams) drops when that goroutine falls behind, and SendDatagram
// blocks while the send queue (32) is full, as for any quic-go application.
type Server struct {
	ln *quic.Listener
	wg sync.WaitGroup // the accept loop and every connection's goroutine

	mu    sync.Mutex // guards conns
	conns map[*quic.Conn]struct{}

	// Received counts datagrams received; Echoed those sent back.
	Received, Echoed atomic.Uint64
}

// Listen starts a server on addr (e.g. "127.0.0.1:0"). ALPN is set in a
// copy of tlsConf; qconf (nil for defaults) gets datagrams switched on.
func Listen(addr string, tlsConf *tls.Config, qconf *quic.Config) (*Server, error) {
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{ALPN}
	var c quic.Config
	if qconf != nil {
		c = *qconf.Clone()
	}
	c.EnableDatagrams = true
	ln, err := quic.ListenAddr(addr, tlsConf, &c)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, conns: make(map[*quic.Conn]struct{})}
	s.wg.Add(1)
	go s.RoutineAccept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// RoutineAccept accepts connections until the listener closes.
func (s *Server) RoutineAccept() {
	defer s.wg.Done()
	for {
		qc, err := s.ln.Accept(context.Background())
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[qc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.RoutineEcho(qc)
	}
}

// RoutineEcho echoes one connection's datagrams until it closes.
func (s *Server) RoutineEcho(qc *quic.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, qc)
		s.mu.Unlock()
	}()
	ctx := qc.Context()
	for {
		b, err := qc.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		s.Received.Add(1)
		if err := qc.SendDatagram(b); err != nil {
			var tooLarge *quic.DatagramTooLargeError
			if errors.As(err, &tooLarge) {
				continue
			}
			return
		}
		s.Echoed.Add(1)
	}
}

// Close closes the listener and every connection, and waits for the
// server's goroutines.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for qc := range s.conns {
		qc.CloseWithError(0, "server closed")
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
