package quiclb

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/quiclb/quiclbtest"
)

// Connections through a NAT that rebinds, and clients that migrate, on a
// server with several transports: with steering each connection's packets
// reach its transport under any source address; without it they land on a
// sibling, which resets them (valid token: same host key) or drops them.

// echoServer runs one quic.Transport per socket, all with the same host
// keys, and echoes every datagram back.
type echoServer struct {
	addr    net.Addr
	trs     []*quic.Transport
	dropped atomic.Int64 // packets a transport had no connection for
	perTr   []atomic.Int64
}

type serverOpts struct {
	transports int
	steer      bool
	resetKey   bool
	retry      bool // every connection attempt must pass a Retry first
}

// dropCounter counts what a Transport drops for an unknown connection ID.
type dropCounter struct{ n *atomic.Int64 }

func (d dropCounter) RecordEvent(ev qlogwriter.Event) {
	if pd, ok := ev.(qlog.PacketDropped); ok && pd.Trigger == qlog.PacketDropUnknownConnectionID {
		d.n.Add(1)
	}
}
func (dropCounter) Close() error { return nil }

func startEchoServer(t *testing.T, o serverOpts) *echoServer {
	t.Helper()
	conns, err := ListenGroup(context.Background(), "127.0.0.1:0", o.transports)
	require.NoError(t, err)
	if o.steer {
		members := make([]Member, len(conns))
		for i := range members {
			members[i] = Member{ServerID: sidA, Transport: i}
		}
		prog, err := Program(Routes(members))
		require.NoError(t, err)
		require.NoError(t, Attach(conns[0], prog))
	}
	cert, err := devcert.Loopback()
	require.NoError(t, err)
	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{"quiclb-test"}
	var token quic.TokenGeneratorKey
	var master [32]byte
	master[0] = 1
	s := &echoServer{addr: conns[0].LocalAddr(), perTr: make([]atomic.Int64, len(conns))}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, c := range conns {
		gen, err := NewGenerator(GeneratorConfig{ServerID: sidA, Transport: i})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: c, ConnectionIDGenerator: gen, TokenGeneratorKey: &token, Tracer: dropCounter{&s.dropped}}
		if o.resetKey {
			tr.StatelessResetKey = DeriveResetKey(master, sidA) // one key for the host's transports
		}
		if o.retry {
			tr.VerifySourceAddress = func(net.Addr) bool { return true }
		}
		ln, err := tr.Listen(tlsConf, &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
		require.NoError(t, err)
		s.trs = append(s.trs, tr)
		wg.Go(func() {
			for {
				qc, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				s.perTr[i].Add(1)
				wg.Go(func() {
					for {
						b, err := qc.ReceiveDatagram(ctx)
						if err != nil {
							return
						}
						qc.SendDatagram(b)
					}
				})
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		for _, tr := range s.trs {
			tr.Close()
		}
		wg.Wait()
		closeAll(conns)
	})
	return s
}

func newRelay(t *testing.T, server net.Addr) *quiclbtest.Relay {
	r, err := quiclbtest.NewRelay(server)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"quiclb-test"}} //nolint:gosec // loopback test server
}

// echoes sends datagrams until n come back, within a bounded time.
func echoes(ctx context.Context, qc *quic.Conn, n int) error {
	for got := 0; got < n; {
		if err := qc.SendDatagram([]byte("ping")); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := qc.ReceiveDatagram(rctx)
		cancel()
		switch {
		case err == nil:
			got++
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
	}
	return nil
}

// outcome counts how connections ended.
type outcome struct {
	survived, reset, failed atomic.Int64
}

func (o *outcome) record(err error) {
	var sr *quic.StatelessResetError
	switch {
	case err == nil:
		o.survived.Add(1)
	case errors.As(err, &sr):
		o.reset.Add(1)
	default:
		o.failed.Add(1)
	}
}

// rebindRun runs conns connections through relays that rebind after three
// echoes, and counts how they end.
func rebindRun(t *testing.T, s *echoServer, conns int) *outcome {
	var o outcome
	var wg sync.WaitGroup
	for range conns {
		r := newRelay(t, s.addr)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			qc, err := quic.DialAddr(ctx, r.Addr().String(), clientTLS(), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
			if err != nil {
				o.record(err)
				return
			}
			defer qc.CloseWithError(0, "")
			err = echoes(ctx, qc, 3)
			if err == nil {
				require.NoError(t, r.Rebind())
				err = echoes(ctx, qc, 3)
			}
			if err != nil && qc.Context().Err() != nil {
				err = context.Cause(qc.Context()) // a reset shows here
			}
			o.record(err)
		})
	}
	wg.Wait()
	return &o
}

const survivalConns = 20

func TestRebindingSurvivesWithSteering(t *testing.T) {
	s := startEchoServer(t, serverOpts{transports: 4, steer: true, resetKey: true})
	o := rebindRun(t, s, survivalConns)
	require.Equal(t, int64(survivalConns), o.survived.Load(), "reset %d, failed %d", o.reset.Load(), o.failed.Load())
	require.Zero(t, o.reset.Load())
	// Without a reset key a misrouted short-header packet is dropped and
	// traced; with steering there is none.
	s = startEchoServer(t, serverOpts{transports: 4, steer: true})
	o = rebindRun(t, s, survivalConns)
	require.Equal(t, int64(survivalConns), o.survived.Load())
	require.Zero(t, s.dropped.Load(), "packets reached a transport without their connection")
	spread := 0
	for i := range s.perTr {
		if s.perTr[i].Load() > 0 {
			spread++
		}
	}
	require.Greater(t, spread, 1, "every connection on one transport: the test shows nothing")
}

// The control: the same run without the program loses connections, so the
// test above can fail.
func TestRebindingWithoutSteeringLosesConnections(t *testing.T) {
	s := startEchoServer(t, serverOpts{transports: 4, resetKey: true})
	o := rebindRun(t, s, survivalConns)
	t.Logf("without steering: survived %d, reset %d, failed %d", o.survived.Load(), o.reset.Load(), o.failed.Load())
	require.Less(t, o.survived.Load(), int64(survivalConns))
	require.Positive(t, o.reset.Load(), "a sibling transport with the host's key resets a live connection")
}

func TestRetryAcrossTransports(t *testing.T) {
	s := startEchoServer(t, serverOpts{transports: 4, steer: true, resetKey: true, retry: true})
	o := rebindRun(t, s, survivalConns)
	require.Equal(t, int64(survivalConns), o.survived.Load(), "reset %d, failed %d", o.reset.Load(), o.failed.Load())
}

func TestMigrationSurvivesWithSteering(t *testing.T) {
	s := startEchoServer(t, serverOpts{transports: 4, steer: true, resetKey: true})
	var o outcome
	var wg sync.WaitGroup
	for range survivalConns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			c1, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			c2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			tr1, tr2 := &quic.Transport{Conn: c1}, &quic.Transport{Conn: c2}
			defer func() { tr1.Close(); tr2.Close(); c1.Close(); c2.Close() }()
			qc, err := tr1.Dial(ctx, s.addr, clientTLS(), &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 5 * time.Second})
			if err != nil {
				o.record(err)
				return
			}
			defer qc.CloseWithError(0, "")
			err = echoes(ctx, qc, 3)
			if err == nil {
				var p *quic.Path
				if p, err = qc.AddPath(tr2); err == nil {
					if err = p.Probe(ctx); err == nil {
						err = p.Switch()
					}
				}
			}
			if err == nil {
				err = echoes(ctx, qc, 3)
			}
			if err == nil && qc.LocalAddr().String() != c2.LocalAddr().String() {
				err = errors.New("the connection did not move to the new path")
			}
			if err != nil && qc.Context().Err() != nil {
				err = context.Cause(qc.Context())
			}
			o.record(err)
		})
	}
	wg.Wait()
	require.Equal(t, int64(survivalConns), o.survived.Load(), "reset %d, failed %d", o.reset.Load(), o.failed.Load())
}
