// Package baseline is a CONNECT-UDP proxy (RFC 9298) built the way Go
// programs build one on quic-go today, for the end-to-end benchmark to
// measure masqroute against.
//
// It is quic-go's stock http3.Server with EnableDatagrams, and a handler for
// extended CONNECT with :protocol connect-udp on the default URI template
// (/.well-known/masque/udp/{target_host}/{target_port}/). The handler
// answers 200 with Capsule-Protocol: ?1, takes the stream over with
// http3.HTTPStreamer, dials a connected UDP socket to the target and runs
// two goroutines per tunnel:
//
//	client → target: str.ReceiveDatagram → strip the context ID → conn.Write
//	target → client: conn.Read → prepend context ID 0 → str.SendDatagram
//
// while the handler itself reads (and discards) the request stream until
// the client closes it. There is no batching and no router of its own: the
// datagrams of a connection go through quic-go's HTTP/3 datagram demux (one
// goroutine per connection, a mutex-guarded map, a 32-datagram queue per
// stream that drops silently when full).
//
// It serves loopback targets only: anything else is refused with 403.
// Targets are IP literals or "localhost".
package baseline

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// pathPrefix is the fixed part of the default CONNECT-UDP template.
const pathPrefix = "/.well-known/masque/udp/"

// maxUDPPayload is the largest UDP payload a tunnel reads from its target.
const maxUDPPayload = 1500

// A Server is the baseline proxy on one UDP socket.
type Server struct {
	h3   *http3.Server
	pc   net.PacketConn
	done chan error // Serve's result

	tunnels sync.WaitGroup // every handler that took a stream over

	// Counters: cheap atomics per datagram, for the benchmark's loss
	// accounting; quic-go's own drops are not counted anywhere.
	ToTarget       atomic.Uint64 // datagrams written to targets
	ToClient       atomic.Uint64 // datagrams sent back to clients
	DropBadContext atomic.Uint64 // no context ID, or one other than 0
	DropSendError  atomic.Uint64 // conn.Write failed
	DropReturn     atomic.Uint64 // str.SendDatagram failed
	TunnelsOpened  atomic.Uint64
}

// Listen serves the proxy on addr (e.g. "127.0.0.1:0") with tlsConf and the
// QUIC configuration qconf (nil: quic-go's defaults; datagrams are switched
// on by http3.Server).
func Listen(addr string, tlsConf *tls.Config, qconf *quic.Config) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{pc: pc, done: make(chan error, 1)}
	s.h3 = &http3.Server{
		Handler:         s,
		TLSConfig:       http3.ConfigureTLSConfig(tlsConf),
		QUICConfig:      qconf,
		EnableDatagrams: true,
	}
	go func() { s.done <- s.h3.Serve(pc) }()
	return s, nil
}

// Addr is the proxy's UDP address.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Close closes every connection, waits for every tunnel to end, and closes
// the socket.
func (s *Server) Close() error {
	err := s.h3.Close()
	s.tunnels.Wait()
	err = errors.Join(err, s.pc.Close())
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// ServeHTTP serves one CONNECT-UDP request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Proto != "connect-udp" {
		http.Error(w, "protocol not supported", http.StatusNotImplemented)
		return
	}
	target, status := parseTarget(r.URL.Path)
	if status != http.StatusOK {
		w.WriteHeader(status)
		return
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	s.tunnels.Add(1)
	defer s.tunnels.Done()
	w.Header().Set("Capsule-Protocol", "?1")
	w.WriteHeader(http.StatusOK)
	str, err := w.(http3.HTTPStreamer).HTTPStream()
	if err != nil {
		conn.Close()
		return
	}
	s.TunnelsOpened.Add(1)
	s.serveTunnel(str, conn)
}

// parseTarget reads {target_host}/{target_port}/ from the path; the status
// is 200 for a loopback target.
func parseTarget(path string) (netip.AddrPort, int) {
	rest, ok := strings.CutPrefix(path, pathPrefix)
	if !ok {
		return netip.AddrPort{}, http.StatusNotFound
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "" {
		return netip.AddrPort{}, http.StatusNotFound
	}
	port, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, http.StatusBadRequest
	}
	host := parts[0]
	if host == "localhost" {
		host = "127.0.0.1"
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, http.StatusBadRequest
	}
	if !addr.Unmap().IsLoopback() {
		return netip.AddrPort{}, http.StatusForbidden
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), http.StatusOK
}

// serveTunnel carries one tunnel's datagrams until the client closes the
// stream or the connection ends.
func (s *Server) serveTunnel(str *http3.Stream, conn *net.UDPConn) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // client → target
		for {
			d, err := str.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			ctxID, n, err := quicvarint.Parse(d)
			if err != nil || ctxID != 0 {
				s.DropBadContext.Add(1)
				continue
			}
			if _, err := conn.Write(d[n:]); err != nil {
				s.DropSendError.Add(1)
				continue
			}
			s.ToTarget.Add(1)
		}
	})
	wg.Go(func() { // target → client
		buf := make([]byte, 1+maxUDPPayload)
		for {
			n, err := conn.Read(buf[1:])
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors from the target
			}
			buf[0] = 0 // context ID 0
			if err := str.SendDatagram(buf[:1+n]); err != nil {
				s.DropReturn.Add(1)
				continue
			}
			s.ToClient.Add(1)
		}
	})
	// The stream carries no capsules we act on; its end ends the tunnel.
	_, _ = io.Copy(io.Discard, str)
	cancel()
	conn.Close()
	str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	str.Close()
	wg.Wait()
}
