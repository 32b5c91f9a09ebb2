package main

// The daemon's QUIC sockets: -transports sockets on -listen with
// SO_REUSEPORT, one quic.Transport each, all served by the one proxy; the
// kernel steers each packet to its connection's transport by the transport
// octet of the server's connection IDs (engine/quiclb), and the executor
// runs the tunnels of transport i's connections on its worker i (mod
// -workers). -server-id puts the host's ID in every connection ID for a
// load balancer, -fleet-key-file gives every host the same token and ticket
// keys and each its own reset key, and -reuseport-group lets several
// instances share the address.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/masqroute/masqroute/engine/proxy"
	"github.com/masqroute/masqroute/engine/quiclb"
)

// scaleConfig is the command line of this file.
type scaleConfig struct {
	transports     int
	serverID       string
	configRotation int
	fleetKeyFile   string
	reuseportGroup string
	allow0RTT      bool
	batchWrites    bool
}

func (s *scaleConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.transports, "transports", runtime.GOMAXPROCS(0), "QUIC sockets on -listen (SO_REUSEPORT), each with its own receive loop; the kernel steers\n"+
		"packets to their connection's socket by connection ID (Linux; elsewhere, or if the kernel refuses, one)")
	fs.StringVar(&s.serverID, "server-id", "", "this instance's 8-byte server `ID` in every connection ID, 16 hex digits (AWS NLB QuicServerId,\n"+
		"0x0123456789abcdef); default: a random one per start")
	fs.IntVar(&s.configRotation, "cid-config-rotation", 0, "QUIC-LB config rotation codepoint (0-6) in the first octet of every connection ID")
	fs.StringVar(&s.fleetKeyFile, "fleet-key-file", "", "`file` of keys shared by every instance behind one load balancer: token, reset and ticket\n"+
		"lines of 64 hex digits (docs/scaling.md); turns stateless resets on, with a key per -server-id")
	fs.StringVar(&s.reuseportGroup, "reuseport-group", "", "share -listen with other instances on this host through this `file` (their socket order),\n"+
		"each with its own -server-id; the kernel steers by server ID (docs/scaling.md)")
	fs.BoolVar(&s.allow0RTT, "allow-0rtt", false, "accept 0-RTT from clients that resume a TLS session; their requests are served only once the\n"+
		"handshake has completed, so a replayed 0-RTT flight opens no tunnel (docs/scaling.md)")
	fs.BoolVar(&s.batchWrites, "batch-writes", true, "send quic-go's packets toward clients in batches: one sendmmsg per flush, same-size runs to\n"+
		"one client as UDP GSO (Linux; docs/architecture.md); false: one sendmsg per packet, as quic-go does")
}

func (s *scaleConfig) check() error {
	switch {
	case s.transports < 1 || s.transports > quiclb.MaxTransports:
		return fmt.Errorf("-transports must be 1-%d", quiclb.MaxTransports)
	case s.configRotation < 0 || s.configRotation > quiclb.MaxConfigRotation:
		return fmt.Errorf("-cid-config-rotation must be 0-%d", quiclb.MaxConfigRotation)
	case s.reuseportGroup != "" && s.serverID == "":
		return errors.New("-reuseport-group needs -server-id: the group file names instances by it")
	}
	if s.serverID != "" {
		if _, err := quiclb.ParseServerID(s.serverID); err != nil {
			return fmt.Errorf("-server-id: %w", err)
		}
	}
	return nil
}

// transportSet is the daemon's sockets, their transports and listeners:
// trs[i] and lns[i] run on socks.Conns[i].
type transportSet struct {
	serverID quiclb.ServerID
	socks    *quiclb.Sockets
	trs      []*quic.Transport
	lns      []*quic.Listener
	batched  []net.PacketConn // -batch-writes: socks.Conns wrapped, closed after them
	served   chan error       // one result per listener's Serve

	gauge    *prometheus.GaugeVec   // transports, by steered
	accepted *prometheus.CounterVec // connection attempts, by transport
	unknown  *prometheus.CounterVec // packets for no connection of the transport, by transport
}

// unknownCIDs counts what a transport drops for a connection ID it does
// not know: a packet that reached the wrong transport (or a connection that
// is gone). quic-go traces it when it sends no stateless reset instead, so
// with -fleet-key-file (resets on) only short packets are counted.
type unknownCIDs struct{ c prometheus.Counter }

func (u unknownCIDs) RecordEvent(ev qlogwriter.Event) {
	if pd, ok := ev.(qlog.PacketDropped); ok && pd.Trigger == qlog.PacketDropUnknownConnectionID {
		u.c.Inc()
	}
}

func (unknownCIDs) Close() error { return nil }

// listen opens the transports and serves the proxy on each. d.ln is the
// first listener (its address is every listener's).
func (d *daemon) listen(tlsConf *tls.Config, qconf *quic.Config) error {
	sc := d.cfg.scale
	s := &transportSet{}
	var err error
	if sc.serverID != "" {
		s.serverID, _ = quiclb.ParseServerID(sc.serverID) // check took it
	} else if s.serverID, err = quiclb.RandomServerID(); err != nil {
		return err
	}
	tokenKey, resetKey, err := d.fleetKeys(tlsConf, s.serverID)
	if err != nil {
		return err
	}
	s.socks, err = quiclb.Open(context.Background(), quiclb.OpenConfig{
		Addr: d.cfg.listen, ServerID: s.serverID, Transports: sc.transports, GroupFile: sc.reuseportGroup,
	})
	if err != nil {
		return err
	}
	d.transports = s
	if s.socks.SteerErr != nil {
		d.log.Warn("the kernel does not steer by connection ID: serving on one transport", "asked", sc.transports, "error", s.socks.SteerErr)
	}
	s.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "masqroute_quic_transports",
		Help: "QUIC sockets serving -listen, by whether the kernel steers packets to them by connection ID (steered=\"false\": it refused, or one was asked for).",
	}, []string{"steered"})
	s.gauge.WithLabelValues(strconv.FormatBool(s.socks.Steered)).Set(float64(len(s.socks.Conns)))
	s.gauge.WithLabelValues(strconv.FormatBool(!s.socks.Steered)).Set(0)
	s.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "masqroute_quic_transport_connections_total",
		Help: "Connection attempts each transport (socket) took, before the handshake: the spread of new connections over the transports.",
	}, []string{"transport"})
	s.unknown = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "masqroute_quic_transport_unknown_cid_total",
		Help: "Packets a transport dropped for a connection ID it does not know: misrouted, or for a connection that is gone (not counted when a stateless reset answers them).",
	}, []string{"transport"})
	qc := d.proxy.QUICConfig(qconf)
	// 0-RTT: quic-go's Listener (not ListenEarly) hands a connection to
	// the proxy only after the handshake completed, which a replayed
	// 0-RTT flight cannot do; its early requests wait in their streams
	// until then.
	qc.Allow0RTT = sc.allow0RTT
	for i, conn := range s.socks.Conns {
		gen, err := quiclb.NewGenerator(quiclb.GeneratorConfig{ServerID: s.serverID, Transport: i, ConfigRotation: sc.configRotation})
		if err != nil {
			return err
		}
		var pc net.PacketConn = conn
		if sc.batchWrites {
			if pc, err = proxy.BatchedQUICConn(conn); err != nil {
				return err
			}
			s.batched = append(s.batched, pc)
		}
		tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: gen, TokenGeneratorKey: tokenKey, StatelessResetKey: resetKey,
			Tracer: unknownCIDs{s.unknown.WithLabelValues(strconv.Itoa(i))}}
		accepted := s.accepted.WithLabelValues(strconv.Itoa(i))
		tr.ConnContext = func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
			accepted.Inc()
			return proxy.WithWorker(ctx, i), nil // its tunnels on executor worker i mod -workers
		}
		d.proxy.ConfigureTransport(tr) // per-address limits first, then the count
		s.trs = append(s.trs, tr)
		ln, err := tr.Listen(tlsConf, qc)
		if err != nil {
			return err
		}
		s.lns = append(s.lns, ln)
	}
	d.ln = s.lns[0]
	s.served = make(chan error, len(s.lns))
	d.served = s.served
	for _, ln := range s.lns {
		go func() { s.served <- d.proxy.Serve(ln) }()
	}
	d.log.Info("QUIC transports", "transports", len(s.trs), "steered", s.socks.Steered, "server_id", s.serverID.String(),
		"fleet_keys", sc.fleetKeyFile != "", "reuseport_group", sc.reuseportGroup, "allow_0rtt", sc.allow0RTT)
	return nil
}

// fleetKeys reads -fleet-key-file: the token key, the ticket keys (set on
// tlsConf) and this server ID's reset key. Without the file, the token key
// is one random key shared by this process's transports (a Retry issued by
// one transport validates on any) and stateless resets stay off.
func (d *daemon) fleetKeys(tlsConf *tls.Config, id quiclb.ServerID) (*quic.TokenGeneratorKey, *quic.StatelessResetKey, error) {
	if d.cfg.scale.fleetKeyFile == "" {
		var key quic.TokenGeneratorKey
		if _, err := rand.Read(key[:]); err != nil {
			return nil, nil, err
		}
		return &key, nil, nil
	}
	k, err := quiclb.LoadFleetKeys(d.cfg.scale.fleetKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("-fleet-key-file: %w", err)
	}
	tlsConf.SetSessionTicketKeys(k.Tickets)
	return &k.Token, k.ResetKey(id), nil
}

// collectors are the transports' metrics.
func (s *transportSet) collectors() []prometheus.Collector {
	if s == nil || s.gauge == nil {
		return nil
	}
	return []prometheus.Collector{s.gauge, s.accepted, s.unknown}
}

// close ends the listeners (after the proxy's drain), waits for their
// Serve calls, then closes the transports and the sockets; an instance of a
// reuseport group hands the group's steering to the survivors first
// (quiclb.Sockets.Close). It may be called on a half-opened set.
func (d *daemon) closeTransports() {
	s := d.transports
	if s == nil {
		return
	}
	for _, ln := range s.lns {
		ln.Close()
	}
	if s.served != nil {
		for range s.lns {
			if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Debug("proxy Serve returned", "error", err)
			}
		}
	}
	for _, tr := range s.trs {
		tr.Close() // its connections have ended with the proxy
	}
	if err := s.socks.Close(); err != nil {
		d.log.Warn("closing the QUIC sockets", "error", err)
	}
	for _, pc := range s.batched {
		_ = pc.Close() // stops its flusher; socks.Close closed the socket
	}
}
