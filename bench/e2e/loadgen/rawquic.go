package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/bench/e2e/rawecho"
)

// RawQUIC sends the datagrams as raw QUIC datagrams (RFC 9221) to a
// rawecho server, with no HTTP/3 and no proxy: the ceiling for a proxy on
// quic-go. Tunnels are only labels here: tunnel i's datagrams go on
// connection i mod conns, and each connection has one reader.
type RawQUIC struct {
	// Addr is the rawecho server's address.
	Addr string
	// TLS must trust the server's certificate; its ALPN is set to
	// rawecho.ALPN.
	TLS *tls.Config
	// QUIC is the connections' configuration (nil: quic-go's defaults);
	// datagrams are switched on.
	QUIC *quic.Config
}

// Name is "rawquic".
func (r *RawQUIC) Name() string { return "rawquic" }

// Open dials conns connections; target is ignored.
func (r *RawQUIC) Open(ctx context.Context, _ string, tunnels, conns int) (Flows, error) {
	tlsConf := &tls.Config{}
	if r.TLS != nil {
		tlsConf = r.TLS.Clone()
	}
	tlsConf.NextProtos = []string{rawecho.ALPN}
	var qconf quic.Config
	if r.QUIC != nil {
		qconf = *r.QUIC.Clone()
	}
	qconf.EnableDatagrams = true
	f := &rawFlows{conns: make([]*quic.Conn, conns)}
	err := parallel(ctx, conns, conns, func(ctx context.Context, i int) error {
		qc, err := quic.DialAddr(ctx, r.Addr, tlsConf, &qconf)
		f.conns[i] = qc
		return err
	})
	if err == nil {
		for _, qc := range f.conns {
			if !qc.ConnectionState().SupportsDatagrams.Remote {
				err = errors.New("server does not take QUIC datagrams")
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("loadgen: rawquic: %w", err)
	}
	return f, nil
}

type rawFlows struct {
	conns []*quic.Conn // nil entries where a dial failed
}

func (f *rawFlows) Send(i int, b []byte) error { return f.conns[i%len(f.conns)].SendDatagram(b) }

func (f *rawFlows) Readers() []Reader {
	rs := make([]Reader, len(f.conns))
	for i, qc := range f.conns {
		ctx := qc.Context()
		rs[i] = func(buf []byte) (int, error) {
			d, err := qc.ReceiveDatagram(ctx)
			if err != nil {
				return 0, err
			}
			return copy(buf, d), nil
		}
	}
	return rs
}

func (f *rawFlows) Probe() Probe { return nil }

func (f *rawFlows) Close() error {
	for _, qc := range f.conns {
		if qc != nil {
			qc.CloseWithError(0, "")
		}
	}
	return nil
}

// RawEchoProbe reads a rawecho server's counters.
func RawEchoProbe(s *rawecho.Server) Probe {
	return ProbeFunc(func(context.Context) (Counters, error) {
		return Counters{Hops: []Hop{
			{Stage: StageTargetIn, Name: "rawecho: received", Count: s.Received.Load()},
			{Stage: StageTargetOut, Name: "rawecho: echoed", Count: s.Echoed.Load()},
		}}, nil
	})
}
