// Package baseline is a CONNECT-UDP proxy (RFC 9298) built the way Go
// programs build one on quic-go today, for the end-to-end benchmark to
// measure masqroute against.
//
// It is quic-go's stock http3.Server with EnableDatagrams, serving
// masqroute's proxy.Proxy.HTTP3Handler: the handler a program that already
// runs an http3.Server mounts to serve CONNECT-UDP (see docs/embedding.md),
// so the benchmark's numbers for this baseline are that handler's. It
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
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine/proxy"
)

// pathPrefix is the fixed part of the default CONNECT-UDP template.
const pathPrefix = "/.well-known/masque/udp/"

// maxUDPPayload is the largest UDP payload a tunnel carries.
const maxUDPPayload = 1500

// A Server is the baseline proxy on one UDP socket.
type Server struct {
	h3    *http3.Server
	proxy *proxy.Proxy
	pc    net.PacketConn
	done  chan error // Serve's result
}

// Stats are the baseline's counters, for the benchmark's loss accounting;
// quic-go's own drops are not counted anywhere.
type Stats struct {
	ToTarget       uint64 // datagrams written to targets
	ToClient       uint64 // datagrams sent back to clients
	DropBadContext uint64 // no context ID, or one other than 0
	DropSendError  uint64 // conn.Write failed
	DropReturn     uint64 // str.SendDatagram failed
	TunnelsOpened  uint64
}

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	st := s.proxy.Stats()
	return Stats{
		ToTarget:       st.ToTarget,
		ToClient:       st.ToClient,
		DropBadContext: st.DropMalformed + st.DropUnknownContext,
		DropSendError:  st.DropSendError,
		DropReturn:     st.DropReturnSendError + st.DropReturnOversize,
		TunnelsOpened:  st.TunnelsOpened,
	}
}

// loopbackOnly is the baseline's target policy.
type loopbackOnly struct{}

func (loopbackOnly) Check(ap netip.AddrPort) error {
	if !ap.Addr().Unmap().IsLoopback() {
		return errors.New("not a loopback target")
	}
	return nil
}

// Listen serves the proxy on addr (e.g. "127.0.0.1:0") with tlsConf and the
// QUIC configuration qconf (nil: quic-go's defaults; datagrams are switched
// on by http3.Server).
func Listen(addr string, tlsConf *tls.Config, qconf *quic.Config) (*Server, error) {
	p, err := proxy.New(proxy.Config{
		Name:               "baseline",
		Policy:             loopbackOnly{},
		MaxTunnelsPerConn:  -1,
		MaxDatagramPayload: maxUDPPayload,
		Logger:             slog.New(slog.DiscardHandler),
		// The targets the baseline always served: IP literals and
		// "localhost", loopback only; no DNS lookups.
		Authorize: func(r *http.Request) error {
			if _, status := parseTarget(r.URL.Path); status != http.StatusOK {
				return &proxy.StatusError{Status: status, ProxyError: "http_request_error", Details: "target not served"}
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{proxy: p, pc: pc, done: make(chan error, 1)}
	s.h3 = &http3.Server{
		Handler:         p.HTTP3Handler(),
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
	err = errors.Join(err, s.proxy.Close())
	err = errors.Join(err, s.pc.Close())
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		err = errors.Join(err, serr)
	}
	return err
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
