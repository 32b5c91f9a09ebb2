package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// DefaultMaxHeaderBytes is the request field section limit when
// Config.MaxHeaderBytes is 0: ample for a proxy's requests, and small
// enough that a peer cannot make a connection buffer much.
const DefaultMaxHeaderBytes = 16 << 10

// DefaultHeaderTimeout bounds, when Config.HeaderTimeout is 0, how long a
// peer's new stream may take to deliver its request head or stream type.
const DefaultHeaderTimeout = 5 * time.Second

// Config configures a Conn.
type Config struct {
	// HeaderTimeout bounds the time from a request stream's arrival to
	// its complete HEADERS frame, and from a unidirectional stream's
	// arrival to its stream type: a stream that takes longer is reset
	// (H3_REQUEST_INCOMPLETE) and its goroutine ends. 0 means
	// DefaultHeaderTimeout; negative, none.
	HeaderTimeout time.Duration
	// Handler serves every request. Required.
	Handler http.Handler
	// MaxHeaderBytes bounds a request's HEADERS frame and its decoded field
	// section (RFC 9114 §4.2.2); it is advertised as
	// SETTINGS_MAX_FIELD_SECTION_SIZE. A request above it is answered 431,
	// trailers above it reset the stream with H3_EXCESSIVE_LOAD.
	// 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// Datagrams advertises SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). The
	// QUIC connection must have datagrams enabled (quic.Config
	// EnableDatagrams). Conn never reads datagrams itself.
	Datagrams bool
	// ExtraSettings are advertised as well, in order. They must not repeat
	// an identifier or name one that Conn sets itself or that would turn on
	// QPACK's dynamic table.
	ExtraSettings []wire.Setting
	// ConnContext, if set, derives the context every request context of
	// the connection is derived from, once per connection, from the QUIC
	// connection's context (as http.Server.ConnContext does).
	ConnContext func(ctx context.Context) context.Context
	// Logger receives debug logs of protocol errors and handler panics;
	// nil discards the former and sends panics to slog.Default().
	Logger *slog.Logger
}

// Conn is the server side of one HTTP/3 connection. It owns the QUIC
// connection's streams, never its datagrams.
//
// Goroutines, all started by Serve and all ended before it returns:
// routineAcceptRequests (on Serve's own goroutine) and
// routineAcceptUniStreams; one routineRequest per request stream, running
// its handler; one routineUniStream per unidirectional stream of the peer,
// which for the control stream and the QPACK streams lives as long as the
// connection; and, at most once per request, a short routineProbeReset
// (request.go). Every one of them ends when the QUIC connection closes,
// except a handler that does not return.
type Conn struct {
	qc             *quic.Conn
	handler        http.Handler
	maxHeaderBytes int
	headerTimeout  time.Duration // <= 0: none
	logger         *slog.Logger  // never nil
	panicLogger    *slog.Logger  // never nil
	connCtx        context.Context
	remoteAddr     string
	tls            *tls.ConnectionState

	ctrlMu sync.Mutex // serializes writes to ctrl
	ctrl   *quic.SendStream

	// peerSettings is written by the control stream goroutine before it
	// closes peerSettingsDone, and only read after.
	peerSettingsDone chan struct{}
	peerSettings     wire.Settings

	gotControl, gotQPACKEncoder, gotQPACKDecoder atomic.Bool

	mu           sync.Mutex // guards the fields below
	nextStreamID quic.StreamID
	goingAway    bool
	active       int // request streams whose goroutine runs
	drained      chan struct{}

	closeErr atomic.Pointer[wire.H3Error] // first error this side closed with
	serving  atomic.Bool
	wg       sync.WaitGroup // every goroutine Serve started, but its own
}

// NewConn sets up the server side of HTTP/3 on qc: it opens the control
// stream and sends SETTINGS (RFC 9114 §6.2.1) with
// SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (RFC 9220 §3),
// SETTINGS_MAX_FIELD_SECTION_SIZE, SETTINGS_H3_DATAGRAM=1 if
// cfg.Datagrams, and cfg.ExtraSettings. The QPACK settings are left out,
// so the peer's encoder has no dynamic table (RFC 9204 §3.2.3).
//
// qc should have completed its handshake, as quic.Listener.Accept's
// connections have: every request's TLS field is the connection state
// taken here. On error the caller closes qc.
func NewConn(qc *quic.Conn, cfg *Config) (*Conn, error) {
	if cfg == nil || cfg.Handler == nil {
		return nil, errors.New("h3: Config.Handler is required")
	}
	maxHeader := cfg.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	cs := qc.ConnectionState()
	if cfg.Datagrams && !cs.SupportsDatagrams.Local {
		// RFC 9297 §2.1.1: H3_DATAGRAM=1 needs max_datagram_frame_size.
		return nil, errors.New("h3: Config.Datagrams needs quic.Config.EnableDatagrams")
	}
	settings := wire.Settings{
		ExtendedConnect:        true,
		Datagram:               cfg.Datagrams,
		MaxFieldSectionSize:    uint64(maxHeader),
		HasMaxFieldSectionSize: true,
	}
	if err := checkExtraSettings(cfg.ExtraSettings); err != nil {
		return nil, err
	}
	settings.Other = cfg.ExtraSettings

	c := &Conn{
		qc:               qc,
		handler:          cfg.Handler,
		maxHeaderBytes:   maxHeader,
		headerTimeout:    cfg.HeaderTimeout,
		logger:           cfg.Logger,
		panicLogger:      cfg.Logger,
		connCtx:          qc.Context(),
		remoteAddr:       qc.RemoteAddr().String(),
		tls:              &cs.TLS,
		peerSettingsDone: make(chan struct{}),
		drained:          make(chan struct{}),
	}
	if c.headerTimeout == 0 {
		c.headerTimeout = DefaultHeaderTimeout
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
		c.panicLogger = slog.Default()
	}
	if cfg.ConnContext != nil {
		c.connCtx = cfg.ConnContext(c.connCtx)
		if c.connCtx == nil {
			return nil, errors.New("h3: Config.ConnContext returned nil")
		}
	}

	ctrl, err := qc.OpenUniStream()
	if err != nil {
		return nil, fmt.Errorf("h3: opening the control stream: %w", err)
	}
	b := quicvarint.Append(nil, wire.StreamTypeControl)
	b = wire.AppendSettingsFrame(b, settings)
	if _, err := ctrl.Write(b); err != nil {
		return nil, fmt.Errorf("h3: sending SETTINGS: %w", err)
	}
	c.ctrl = ctrl
	return c, nil
}

// checkExtraSettings rejects what AppendSettingsFrame would panic on, and
// the QPACK settings: this server decodes with the static table only.
func checkExtraSettings(s []wire.Setting) error {
	for i, o := range s {
		switch o.ID {
		case 0x00, 0x02, 0x03, 0x04, 0x05, // HTTP/2 only (RFC 9114 §7.2.4.1)
			wire.SettingQPACKMaxTableCapacity, wire.SettingQPACKBlockedStreams,
			wire.SettingMaxFieldSectionSize, wire.SettingEnableConnectProtocol, wire.SettingH3Datagram:
			return fmt.Errorf("h3: setting %#x cannot be in Config.ExtraSettings", o.ID)
		}
		if o.ID > quicvarint.Max || o.Value > quicvarint.Max {
			return fmt.Errorf("h3: setting %#x = %d does not fit a varint", o.ID, o.Value)
		}
		for _, p := range s[:i] {
			if p.ID == o.ID {
				return fmt.Errorf("h3: setting %#x repeated in Config.ExtraSettings", o.ID)
			}
		}
	}
	return nil
}

// Serve accepts the peer's streams and serves them until the QUIC
// connection closes, then waits for every handler to return. It returns
// nil if the connection was closed with H3_NO_ERROR (by either side), the
// *wire.H3Error this side closed it with for a peer's protocol violation,
// or else the connection's close cause. It may be called once.
func (c *Conn) Serve() error {
	if !c.serving.CompareAndSwap(false, true) {
		return errors.New("h3: Serve called twice")
	}
	c.logger.Debug("h3: serving connection", "remote", c.remoteAddr)
	c.wg.Go(c.routineAcceptUniStreams)
	c.routineAcceptRequests()
	c.wg.Wait()
	err := c.serveErr()
	c.logger.Debug("h3: connection done", "remote", c.remoteAddr, "error", err)
	return err
}

func (c *Conn) serveErr() error {
	if e := c.closeErr.Load(); e != nil {
		return e
	}
	// The accept calls fail as soon as the connection starts closing,
	// which can be before its context is cancelled.
	<-c.qc.Context().Done()
	cause := context.Cause(c.qc.Context())
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.ErrorCode == quic.ApplicationErrorCode(wire.ErrCodeNoError) {
		return nil
	}
	return cause
}

// routineAcceptRequests accepts request streams until the connection
// closes. After GoAway it resets every new one with H3_REQUEST_REJECTED
// (RFC 9114 §5.2), and no handler runs for it.
func (c *Conn) routineAcceptRequests() {
	for {
		str, err := c.qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.goingAway {
			c.mu.Unlock()
			str.CancelRead(quicCode(wire.ErrCodeRequestRejected))
			str.CancelWrite(quicCode(wire.ErrCodeRequestRejected))
			str.ReleaseStreamCredit()
			continue
		}
		c.nextStreamID = str.StreamID() + 4
		c.active++
		c.mu.Unlock()
		c.wg.Go(func() { c.routineRequest(str) })
	}
}

// routineRequest serves one request stream. The stream's credit is
// released only when it returns, so with quic.Config
// RequireStreamCreditRelease the peer's MaxIncomingStreams bounds the
// running handlers, not only the open streams.
func (c *Conn) routineRequest(str *quic.Stream) {
	defer func() {
		str.ReleaseStreamCredit()
		c.mu.Lock()
		c.active--
		c.maybeDrainedLocked()
		c.mu.Unlock()
	}()
	c.serveRequest(str)
}

func (c *Conn) maybeDrainedLocked() {
	if c.goingAway && c.active == 0 {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
	}
}

// GoAway starts a graceful shutdown (RFC 9114 §5.2): it sends GOAWAY with
// the first request stream ID not yet accepted. Requests on lower IDs are
// served to their end; streams from that ID on are reset with
// H3_REQUEST_REJECTED, so the client knows it may retry them elsewhere.
// Serve keeps running until the connection closes: once Drained is closed,
// the caller may close it with H3_NO_ERROR. Later calls do nothing.
func (c *Conn) GoAway() error {
	c.mu.Lock()
	if c.goingAway {
		c.mu.Unlock()
		return nil
	}
	c.goingAway = true
	id := c.nextStreamID
	c.maybeDrainedLocked()
	c.mu.Unlock()

	c.logger.Debug("h3: sending GOAWAY", "remote", c.remoteAddr, "id", id)
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if _, err := c.ctrl.Write(appendGoAway(nil, uint64(id))); err != nil {
		return fmt.Errorf("h3: sending GOAWAY: %w", err)
	}
	return nil
}

// headerDeadline is the read deadline for a new stream's head: now plus
// the header timeout, or none.
func (c *Conn) headerDeadline() time.Time {
	if c.headerTimeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(c.headerTimeout)
}

// Drained is closed once GoAway was called and every request accepted
// before it has been served.
func (c *Conn) Drained() <-chan struct{} { return c.drained }

// CloseWithError closes the connection with an HTTP/3 error code
// (H3_NO_ERROR for a normal close).
func (c *Conn) CloseWithError(code wire.ErrorCode, msg string) error {
	return c.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

// closeWithError closes the connection for a peer's protocol violation,
// and remembers the first one for Serve to return.
func (c *Conn) closeWithError(e *wire.H3Error) {
	if c.closeErr.CompareAndSwap(nil, e) {
		c.logger.Debug("h3: closing connection", "remote", c.remoteAddr, "error", e)
	}
	_ = c.qc.CloseWithError(quic.ApplicationErrorCode(e.Code), e.Reason)
}

// Context is the QUIC connection's context, done when it closes.
func (c *Conn) Context() context.Context { return c.qc.Context() }

// PeerSettings is closed once the peer's SETTINGS frame arrived.
func (c *Conn) PeerSettings() <-chan struct{} { return c.peerSettingsDone }

// Settings returns the peer's SETTINGS; before PeerSettings is closed it
// returns the zero Settings (every setting at its default).
func (c *Conn) Settings() wire.Settings {
	select {
	case <-c.peerSettingsDone:
		return c.peerSettings
	default:
		return wire.Settings{}
	}
}
