package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/client"
)

// DefaultDialParallel bounds how many tunnels a MASQUE transport sets up at
// once.
const DefaultDialParallel = 64

// MASQUE opens CONNECT-UDP tunnels (RFC 9298) through a proxy with
// masqroute's client: one client.Conn per connection, one client.UDPConn per
// tunnel. It drives any proxy that speaks CONNECT-UDP over HTTP/3 with
// HTTP Datagrams.
type MASQUE struct {
	// Proxy is the proxy's address, host:port.
	Proxy string
	// TLS must trust the proxy's certificate.
	TLS *tls.Config
	// QUIC is the client connections' QUIC configuration (nil: quic-go's
	// defaults); datagrams are switched on by the client.
	QUIC *quic.Config
	// Template is the proxy's URI template; "" is
	// proxy.DefaultUDPTemplate.
	Template string
	// RingSize is each tunnel's receive ring (client.Config.RingSize).
	RingSize int
	// DialParallel bounds concurrent tunnel setups. Default
	// DefaultDialParallel.
	DialParallel int
	// Header is added to every tunnel request (Proxy-Authorization).
	Header http.Header
	// Logger receives the client's logs. Default: discarded.
	Logger *slog.Logger
	// Carrier is client.Config.Carrier: "" or "h3" for HTTP/3, "h2", "h1"
	// or "auto".
	Carrier string
}

// Name is "masque".
func (m *MASQUE) Name() string { return "masque" }

// Open dials conns connections to the proxy and opens tunnels tunnels to
// target over them, tunnel i on connection i mod conns.
func (m *MASQUE) Open(ctx context.Context, target string, tunnels, conns int) (Flows, error) {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := &client.Config{TLSConfig: m.TLS, QUICConfig: m.QUIC, Template: m.Template, RingSize: m.RingSize, Header: m.Header, Logger: log,
		Carrier: m.Carrier}
	f := &masqueFlows{conns: make([]*client.Conn, conns), tunnels: make([]*client.UDPConn, tunnels)}
	err := parallel(ctx, conns, conns, func(ctx context.Context, i int) error {
		c, err := client.Dial(ctx, m.Proxy, cfg)
		f.conns[i] = c
		return err
	})
	if err == nil {
		par := m.DialParallel
		if par <= 0 {
			par = DefaultDialParallel
		}
		err = parallel(ctx, tunnels, par, func(ctx context.Context, i int) error {
			u, err := f.conns[i%conns].DialUDP(ctx, target)
			if err != nil {
				return fmt.Errorf("tunnel %d: %w", i, err)
			}
			f.tunnels[i] = u
			return nil
		})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("loadgen: masque: %w", err)
	}
	return f, nil
}

// parallel runs fn(0..n-1) with at most par at once and returns the first
// error; after one, the rest are not started and ctx passed to running ones
// is cancelled.
func parallel(ctx context.Context, n, par int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(par, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

type masqueFlows struct {
	conns   []*client.Conn    // nil entries where a dial failed
	tunnels []*client.UDPConn // likewise
}

func (f *masqueFlows) Send(i int, b []byte) error {
	_, err := f.tunnels[i].Write(b)
	return err
}

func (f *masqueFlows) Readers() []Reader {
	rs := make([]Reader, len(f.tunnels))
	for i, u := range f.tunnels {
		rs[i] = u.Read
	}
	return rs
}

// Probe reads the client routers' counters: what reached the client and
// what its tunnels' readers took, and the client's drops.
func (f *masqueFlows) Probe() Probe {
	return ProbeFunc(func(context.Context) (Counters, error) {
		var st engine.Stats
		for _, c := range f.conns {
			s := c.Router().Stats()
			st.Dispatched += s.Dispatched
			st.Delivered += s.Delivered
			st.DroppedUnknown += s.DroppedUnknown
			st.DroppedPendingOverflow += s.DroppedPendingOverflow
			st.DroppedRingFull += s.DroppedRingFull
			st.DroppedClosed += s.DroppedClosed
		}
		return Counters{
			Hops: []Hop{
				{Stage: StageClientIn, Name: "client: router dispatched", Count: st.Dispatched},
				{Stage: StageClientDelivered, Name: "client: router delivered", Count: st.Delivered},
			},
			Drops: routerDrops("client.", st),
		}, nil
	})
}

func routerDrops(prefix string, st engine.Stats) map[string]uint64 {
	return map[string]uint64{
		prefix + "unknown_stream":   st.DroppedUnknown,
		prefix + "pending_overflow": st.DroppedPendingOverflow,
		prefix + "ring_full":        st.DroppedRingFull,
		prefix + "closed":           st.DroppedClosed,
	}
}

// Close closes every tunnel, then every connection.
func (f *masqueFlows) Close() error {
	var errs []error
	for _, u := range f.tunnels {
		if u != nil {
			errs = append(errs, u.Close())
		}
	}
	for _, c := range f.conns {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
