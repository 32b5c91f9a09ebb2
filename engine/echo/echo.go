// Package echo is a UDP echo target for demos, tests and load generation:
// it sends every datagram back to where it came from.
package echo

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// A Server echoes UDP datagrams.
type Server struct {
	conn *net.UDPConn
	wg   sync.WaitGroup

	// Received counts datagrams received; Sent those echoed.
	Received, Sent atomic.Uint64
}

// Listen starts an echo server on addr (e.g. "127.0.0.1:0").
func Listen(addr string) (*Server, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	// Large socket buffers so bursts from load tests are not lost here.
	_ = conn.SetReadBuffer(8 << 20)
	_ = conn.SetWriteBuffer(8 << 20)
	s := &Server{conn: conn}
	s.wg.Add(1)
	go s.routineEcho()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// routineEcho is the server's only goroutine.
func (s *Server) routineEcho() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.Received.Add(1)
		if _, err := s.conn.WriteToUDPAddrPort(buf[:n], from); err == nil {
			s.Sent.Add(1)
		}
	}
}

// Close stops the server and waits for its goroutine.
func (s *Server) Close() error {
	err := s.conn.Close()
	s.wg.Wait()
	return err
}
