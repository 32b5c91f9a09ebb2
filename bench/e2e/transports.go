package e2e

// masqroute on several QUIC transports, as the daemon's -transports runs
// it (cmd/masqroute/listen_transports.go): sockets on one address with
// SO_REUSEPORT, steered by the transport octet of 16-byte QUIC-LB
// connection IDs (engine/quiclb), one quic.Transport each, all serving one
// proxy. Its probe (transportStats.Read) counts, per transport, the QUIC
// packets its connections received (quic.ConnectionStats) and the packets
// it dropped for a connection ID it does not know: after the handshake, a
// packet the kernel handed to the wrong socket.
//
// The accept loops are the harness's own (Accept, then Proxy.ServeConn, as
// Proxy.Serve does) so that it holds each transport's connections.

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/proxy"
	"github.com/masqroute/masqroute/engine/quiclb"
)

// ServerConfig is how StartServerWith sets the server up.
type ServerConfig struct {
	// Transports, if set, runs masqroute on that many steered sockets
	// (see transports.go) with 16-byte QUIC-LB connection IDs, 1
	// included; 0 is one socket with quic-go's default 4-byte IDs, as
	// before. Other implementations ignore it.
	Transports int
	// Carrier, if "h2" or "h1", makes masqroute also serve that carrier
	// on TCP, on the port number of its QUIC socket (Proxy.ServeTCP), and
	// the Env's client use it; "" or "h3" is HTTP/3 alone. masqroute
	// only.
	Carrier string
	// Affinity, with Transports, places each transport's tunnels on the
	// executor worker of its index (proxy.WithWorker), as the daemon
	// does; otherwise they are spread round-robin over the workers.
	Affinity bool
}

// transportStats is what a multi-transport server counts per transport.
type transportStats struct {
	stray []atomic.Uint64 // by transport

	mu    sync.Mutex
	conns [][]*quic.Conn // by transport, every connection it accepted
}

// Read is the transports' probe: the QUIC packets each transport's
// connections received as the data-path count loadgen.TransportPacketsKey(T)
// (packets, not datagrams; the result's DataPath.TransportShares), and the
// strays as the drop StrayDrop.
func (s *transportStats) Read(context.Context) (loadgen.Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := loadgen.Counters{Drops: make(map[string]uint64), DataPath: make(map[string]uint64)}
	for t, conns := range s.conns {
		var n uint64
		for _, qc := range conns {
			n += qc.ConnectionStats().PacketsReceived
		}
		c.DataPath[loadgen.TransportPacketsKey(t)] = n
		c.Drops[StrayDrop] += s.stray[t].Load()
	}
	return c, nil
}

// StrayDrop is the drop key of the packets a transport dropped for a
// connection ID it did not know.
const StrayDrop = "quic.transport_stray"

func (s *transportStats) accepted(t int, qc *quic.Conn) {
	s.mu.Lock()
	s.conns[t] = append(s.conns[t], qc)
	s.mu.Unlock()
}

// strayCounter is a Transport's tracer: it counts the packets the
// transport drops for an unknown connection ID.
type strayCounter struct{ n *atomic.Uint64 }

func (c strayCounter) RecordEvent(ev qlogwriter.Event) {
	if pd, ok := ev.(qlog.PacketDropped); ok && pd.Trigger == qlog.PacketDropUnknownConnectionID {
		c.n.Add(1)
	}
}

func (strayCounter) Close() error { return nil }

// startMasqrouteTransports serves p on n steered transports on 127.0.0.1,
// each transport's tunnels on the worker of its index with affinity.
func (e *Env) startMasqrouteTransports(c *devcert.Cert, p *proxy.Proxy, n int, affinity bool) (string, error) {
	id, err := quiclb.RandomServerID()
	if err != nil {
		return "", errors.Join(err, p.Close())
	}
	socks, err := quiclb.Open(context.Background(), quiclb.OpenConfig{Addr: "127.0.0.1:0", ServerID: id, Transports: n})
	if err != nil {
		return "", errors.Join(err, p.Close())
	}
	if socks.SteerErr != nil {
		slog.Warn("e2e: the kernel does not steer by connection ID: one transport", "error", socks.SteerErr)
	}
	stats := &transportStats{stray: make([]atomic.Uint64, len(socks.Conns)), conns: make([][]*quic.Conn, len(socks.Conns))}
	var token quic.TokenGeneratorKey // one for every transport: a Retry validates on any
	if _, err := rand.Read(token[:]); err != nil {
		return "", errors.Join(err, p.Close(), socks.Close())
	}
	tlsConf := c.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	qconf := p.QUICConfig(QUICConfig())
	var trs []*quic.Transport
	var lns []*quic.Listener
	var batched []net.PacketConn
	ctx, cancel := context.WithCancel(context.Background())
	var loops, served sync.WaitGroup
	closeAll := func() error {
		err := p.Close()
		cancel()
		for _, ln := range lns {
			ln.Close()
		}
		loops.Wait()
		served.Wait()
		for _, tr := range trs {
			tr.Close()
		}
		err = errors.Join(err, socks.Close())
		for _, pc := range batched {
			_ = pc.Close() // stops its flusher; the socket is closed already
		}
		return err
	}
	for t, conn := range socks.Conns {
		gen, err := quiclb.NewGenerator(quiclb.GeneratorConfig{ServerID: id, Transport: t})
		if err != nil {
			return "", errors.Join(err, closeAll())
		}
		pc, err := quicSocket(conn)
		if err != nil {
			return "", errors.Join(err, closeAll())
		}
		if pc != net.PacketConn(conn) {
			batched = append(batched, pc)
		}
		tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: gen, TokenGeneratorKey: &token, Tracer: strayCounter{&stats.stray[t]}}
		if affinity {
			tr.ConnContext = func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
				return proxy.WithWorker(ctx, t), nil
			}
		}
		p.ConfigureTransport(tr)
		trs = append(trs, tr)
		ln, err := tr.Listen(tlsConf, qconf)
		if err != nil {
			return "", errors.Join(err, closeAll())
		}
		lns = append(lns, ln)
		loops.Go(func() {
			for {
				qc, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				stats.accepted(t, qc)
				served.Go(func() { _ = p.ServeConn(qc) })
			}
		})
	}
	e.closers = append(e.closers, closeAll)
	e.Proxy = p
	e.Probes = append(e.Probes, loadgen.ProxyProbe(p), stats)
	return lns[0].Addr().String(), nil
}
