// Package client is masqroute's CONNECT-UDP client (RFC 9298): it opens
// UDP tunnels through a MASQUE proxy over one HTTP/3 connection and gives
// each as a net.PacketConn-like UDPConn.
//
// Incoming datagrams are routed by the same engine.Router the proxy uses:
// one goroutine reads the connection's QUIC datagrams and dispatches them by
// stream ID to each tunnel's ring, from which UDPConn.Read pops.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Config configures a client connection. The zero value is usable with a
// TLSConfig that trusts the proxy.
type Config struct {
	// TLSConfig is used for the QUIC handshake; "h3" is added to its
	// NextProtos.
	TLSConfig *tls.Config
	// QUICConfig is cloned; datagrams are switched on.
	QUICConfig *quic.Config
	// Template is the proxy's CONNECT-UDP URI template. Default
	// proxy.DefaultUDPTemplate, with {authority} the proxy's address.
	Template string
	// Header is added to every tunnel request, e.g. Proxy-Authorization
	// with "Bearer TOKEN" for a proxy that wants a token.
	Header http.Header
	// RingSize is each tunnel's receive queue in datagrams. Default
	// engine.DefaultRingSize.
	RingSize int
	// Logger receives debug logs. Default slog.Default().
	Logger *slog.Logger
	// Carrier is what Dial connects with (carrier.go): CarrierH3 (the
	// default), CarrierH2, CarrierH1, or CarrierAuto (HTTP/3, falling
	// back to HTTP/2 when QUIC does not connect).
	Carrier string
	// FallbackDelay is how long CarrierAuto gives HTTP/3 before it starts
	// HTTP/2 beside it. Default DefaultFallbackDelay.
	FallbackDelay time.Duration
}

// A Conn is one HTTP/3 connection to a proxy. It carries any number of
// tunnels and is safe for concurrent use.
type Conn struct {
	qc        *quic.Conn           // HTTP/3 only
	h3        *http3.RawClientConn // HTTP/3 only
	tcp       *tcpTransport        // HTTP/2 and HTTP/1.1 only (carrier.go)
	router    *engine.Router
	tmpl      *template.Template
	authority string
	header    http.Header
	ringSize  int
	log       *slog.Logger

	settingsReady chan struct{} // closed once the proxy's SETTINGS arrived
	settings      wire.Settings // valid after settingsReady
	datagrams     bool          // both sides do HTTP/3 datagrams

	closeOnce sync.Once
	wg        sync.WaitGroup // the connection's goroutines
}

// Dial connects to the proxy at addr (host:port) with cfg.Carrier: over
// QUIC and HTTP/3 by default.
func Dial(ctx context.Context, addr string, cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	switch cfg.Carrier {
	case "", CarrierH3:
		return dialH3(ctx, addr, cfg)
	case CarrierH2, CarrierH1:
		return dialTCP(ctx, addr, cfg, cfg.Carrier)
	case CarrierAuto:
		return dialAuto(ctx, addr, cfg)
	}
	return nil, fmt.Errorf("masqroute client: unknown carrier %q (h3, h2, h1 or auto)", cfg.Carrier)
}

// dialH3 connects over QUIC and HTTP/3.
func dialH3(ctx context.Context, addr string, cfg *Config) (*Conn, error) {
	tlsConf := &tls.Config{}
	if cfg.TLSConfig != nil {
		tlsConf = cfg.TLSConfig.Clone()
	}
	tlsConf.NextProtos = append([]string{http3.NextProtoH3}, tlsConf.NextProtos...)
	qconf := &quic.Config{}
	if cfg.QUICConfig != nil {
		qconf = cfg.QUICConfig.Clone()
	}
	qconf.EnableDatagrams = true
	qc, err := quic.DialAddr(ctx, addr, tlsConf, qconf)
	if err != nil {
		return nil, fmt.Errorf("masqroute client: dial %s: %w", addr, err)
	}
	c, err := NewConn(qc, addr, cfg)
	if err != nil {
		qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeInternalError), "")
		return nil, err
	}
	return c, nil
}

// templateAndLogger are cfg's CONNECT-UDP template, parsed, and logger,
// with their defaults.
func (cfg *Config) templateAndLogger() (*template.Template, *slog.Logger, error) {
	raw := cfg.Template
	if raw == "" {
		raw = template.DefaultUDP
	}
	tmpl, err := template.Parse(raw, "target_host", "target_port")
	if err != nil {
		return nil, nil, fmt.Errorf("masqroute client: template: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return tmpl, log, nil
}

// NewConn runs the client over an established QUIC connection to the proxy
// whose authority (host:port, as the proxy knows itself) is authority.
func NewConn(qc *quic.Conn, authority string, cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	tmpl, log, err := cfg.templateAndLogger()
	if err != nil {
		return nil, err
	}
	// quic-go's HTTP/3 client sends our SETTINGS and runs requests, but
	// its own datagram handling stays off: H3_DATAGRAM is advertised
	// through AdditionalSettings, and this package reads the server's
	// control stream and the connection's datagrams itself.
	tr := &http3.Transport{AdditionalSettings: map[uint64]uint64{wire.SettingH3Datagram: 1}, Logger: log}
	c := &Conn{
		qc:            qc,
		h3:            tr.NewRawClientConn(qc),
		tmpl:          tmpl,
		authority:     authority,
		header:        cfg.Header.Clone(),
		ringSize:      cfg.RingSize,
		log:           log,
		settingsReady: make(chan struct{}),
	}
	c.router = engine.NewRouter(engine.Options{
		RingSize: cfg.RingSize,
		// A reply can overtake the 200 response that opens the tunnel.
		Hold:   engine.HoldOptions{Max: 64},
		Sender: qc,
		Logger: log,
	})
	c.wg.Add(2)
	go c.routineReceiveDatagrams()
	go c.routineAcceptUniStreams()
	return c, nil
}

// Router is the router that receives this connection's datagrams; its Stats
// count what arrived and what was dropped.
func (c *Conn) Router() *engine.Router { return c.router }

// Close closes the connection and every tunnel on it, and waits for the
// connection's goroutines.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.tcp != nil {
			c.tcp.close()
		} else {
			c.qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeNoError), "")
		}
		c.router.Close()
	})
	c.wg.Wait()
	return nil
}

// Context is cancelled when the connection closes.
func (c *Conn) Context() context.Context {
	if c.tcp != nil {
		return c.tcp.ctx
	}
	return c.qc.Context()
}

// Carrier is what the connection runs on: CarrierH3, CarrierH2 or
// CarrierH1.
func (c *Conn) Carrier() string {
	if c.tcp != nil {
		return c.tcp.carrier
	}
	return CarrierH3
}

// routineReceiveDatagrams dispatches the connection's datagrams to tunnels.
func (c *Conn) routineReceiveDatagrams() {
	defer c.wg.Done()
	err := c.router.ReceiveDatagrams(c.qc.Context(), c.qc)
	if errors.Is(err, engine.ErrBadDatagram) {
		c.qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeDatagramError), "bad quarter stream ID")
	}
}

// routineAcceptUniStreams takes the proxy's unidirectional streams: its
// control stream (SETTINGS, GOAWAY) is read here; QPACK streams are drained.
func (c *Conn) routineAcceptUniStreams() {
	defer c.wg.Done()
	var streams sync.WaitGroup
	defer streams.Wait()
	var sawControl bool
	for {
		str, err := c.qc.AcceptUniStream(c.qc.Context())
		if err != nil {
			return
		}
		typ, err := wire.ReadStreamType(str)
		if err != nil {
			continue
		}
		switch typ {
		case wire.StreamTypeControl:
			if sawControl {
				c.closeWithH3Error(&wire.H3Error{Code: wire.ErrCodeStreamCreationError, Reason: "second control stream"})
				return
			}
			sawControl = true
			streams.Go(func() { c.readControlStream(str) })
		case wire.StreamTypeQPACKEncoder, wire.StreamTypeQPACKDecoder:
			streams.Go(func() { discard(str) })
		case wire.StreamTypePush:
			// We never sent MAX_PUSH_ID (RFC 9114 §4.6).
			c.closeWithH3Error(&wire.H3Error{Code: wire.ErrCodeIDError, Reason: "unexpected push stream"})
			return
		default:
			str.CancelRead(quic.StreamErrorCode(wire.ErrCodeStreamCreationError))
		}
	}
}

func (c *Conn) readControlStream(str *quic.ReceiveStream) {
	cr := wire.NewControlStreamReader(str, wire.RoleServer)
	for {
		f, err := cr.Next()
		if err != nil {
			if c.qc.Context().Err() == nil {
				var h3err *wire.H3Error
				if !errors.As(err, &h3err) {
					h3err = &wire.H3Error{Code: wire.ErrCodeClosedCriticalStream, Reason: err.Error()}
				}
				c.closeWithH3Error(h3err)
			}
			return
		}
		switch f.Type {
		case wire.FrameSettings:
			c.settings = *f.Settings
			c.datagrams = c.settings.Datagram && c.qc.ConnectionState().SupportsDatagrams.Remote
			close(c.settingsReady)
		case wire.FrameGoAway:
			c.log.Debug("masqroute client: proxy sent GOAWAY", "id", f.GoAwayID)
		}
	}
}

func (c *Conn) closeWithH3Error(e *wire.H3Error) {
	c.qc.CloseWithError(quic.ApplicationErrorCode(e.Code), e.Reason)
}

// waitSettings waits for the proxy's SETTINGS: an extended CONNECT may only
// be sent once the server has enabled it (RFC 9220 §3).
func (c *Conn) waitSettings(ctx context.Context) error {
	select {
	case <-c.settingsReady:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.Context().Done():
		return context.Cause(c.Context())
	}
	if !c.settings.ExtendedConnect {
		return errors.New("masqroute client: proxy does not enable extended CONNECT")
	}
	return nil
}

func discard(str *quic.ReceiveStream) {
	var buf [256]byte
	for {
		if _, err := str.Read(buf[:]); err != nil {
			return
		}
	}
}

// ErrConnClosed is returned by a tunnel whose connection has closed.
var ErrConnClosed = net.ErrClosed
