package e2e

// masqroute on several QUIC transports, as the daemon's -transports runs
// it (cmd/masqroute/listen_transports.go): sockets on one address with
// SO_REUSEPORT, steered by the transport octet of 16-byte QUIC-LB
// connection IDs (engine/quiclb), one quic.Transport each, all serving one
// proxy. What the benchmark reads of it, on the proxy's /metrics, is
// harness-only (not the daemon's metrics):
//
//	masqroute_datapath_transport_packets_total{transport}  packets the
//	    connections of that transport received (quic.ConnectionStats)
//	masqroute_datapath_transport_stray_total{transport}    packets that
//	    transport dropped for a connection ID it does not know: after the
//	    handshake, a packet the kernel handed to the wrong socket
//	masqroute_datapath_transports{steered}                 the sockets
//
// The accept loops are the harness's own (Accept, then Proxy.ServeConn, as
// Proxy.Serve does) so that it holds each transport's connections.

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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
}

// transportStats is what a multi-transport server counts per transport.
type transportStats struct {
	steered bool
	stray   []atomic.Uint64 // by transport

	mu    sync.Mutex
	conns [][]*quic.Conn // by transport, every connection it accepted
}

var (
	descTrPackets = prometheus.NewDesc("masqroute_datapath_transport_packets_total",
		"Packets the connections of each transport received.", []string{"transport"}, nil)
	descTrStray = prometheus.NewDesc("masqroute_datapath_transport_stray_total",
		"Packets each transport dropped for an unknown connection ID.", []string{"transport"}, nil)
	descTransports = prometheus.NewDesc("masqroute_datapath_transports",
		"QUIC sockets the proxy serves on, by whether the kernel steers by connection ID.", []string{"steered"}, nil)
)

func (s *transportStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTrPackets
	ch <- descTrStray
	ch <- descTransports
}

func (s *transportStats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, conns := range s.conns {
		var n uint64
		for _, qc := range conns {
			n += qc.ConnectionStats().PacketsReceived
		}
		label := strconv.Itoa(t)
		ch <- prometheus.MustNewConstMetric(descTrPackets, prometheus.CounterValue, float64(n), label)
		ch <- prometheus.MustNewConstMetric(descTrStray, prometheus.CounterValue, float64(s.stray[t].Load()), label)
	}
	ch <- prometheus.MustNewConstMetric(descTransports, prometheus.GaugeValue, float64(len(s.conns)), strconv.FormatBool(s.steered))
}

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

// startMasqrouteTransports serves p on n steered transports on 127.0.0.1.
func (e *Env) startMasqrouteTransports(c *devcert.Cert, p *proxy.Proxy, n int) (string, error) {
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
	stats := &transportStats{steered: socks.Steered, stray: make([]atomic.Uint64, len(socks.Conns)), conns: make([][]*quic.Conn, len(socks.Conns))}
	var token quic.TokenGeneratorKey // one for every transport: a Retry validates on any
	if _, err := rand.Read(token[:]); err != nil {
		return "", errors.Join(err, p.Close(), socks.Close())
	}
	tlsConf := c.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	qconf := p.QUICConfig(QUICConfig())
	var trs []*quic.Transport
	var lns []*quic.Listener
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
		return errors.Join(err, socks.Close())
	}
	for t, conn := range socks.Conns {
		gen, err := quiclb.NewGenerator(quiclb.GeneratorConfig{ServerID: id, Transport: t})
		if err != nil {
			return "", errors.Join(err, closeAll())
		}
		tr := &quic.Transport{Conn: conn, ConnectionIDGenerator: gen, TokenGeneratorKey: &token, Tracer: strayCounter{&stats.stray[t]}}
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
	e.Probes = append(e.Probes, loadgen.ProxyProbe(p))
	e.Metrics = append(e.Metrics, stats)
	return lns[0].Addr().String(), nil
}
