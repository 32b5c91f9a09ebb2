package proxy_test

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// udpSink is a loopback UDP socket that counts what arrives: the target of
// an amplification attempt.
type udpSink struct {
	conn     *net.UDPConn
	packets  atomic.Uint64
	wire     atomic.Uint64 // payload + 28 bytes of IPv4/UDP header each
	finished chan struct{}
}

func newUDPSink(t *testing.T) *udpSink {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	conn.SetReadBuffer(8 << 20)
	s := &udpSink{conn: conn, finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.packets.Add(1)
			s.wire.Add(uint64(n) + 28)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.finished })
	return s
}

func (s *udpSink) addr() string { return s.conn.LocalAddr().String() }

// checkAmplification waits for the flood to settle and asserts the wire
// bytes at the sink stay within 3× what the client sent plus the 64 KiB
// allowance per one-second window the flood spanned.
func checkAmplification(t *testing.T, env *proxyEnv, sink *udpSink, clientSent uint64, elapsed time.Duration) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let queued datagrams land
	windows := uint64(elapsed/time.Second) + 2
	bound := proxy.DefaultMaxAmplification*clientSent + windows*proxy.DefaultAmplificationAllowance
	st := env.proxy.Stats()
	t.Logf("client sent %d QUIC bytes in %v; sink got %d datagrams, %d wire bytes (bound %d); dropped: amplification %d, ring full %d",
		clientSent, elapsed, sink.packets.Load(), sink.wire.Load(), bound, st.DropAmplification, st.Router.DroppedRingFull)
	require.LessOrEqual(t, sink.wire.Load(), bound, "wire bytes at the target")
	require.Positive(t, sink.packets.Load(), "zero-length payloads are legal: some go through")
	require.Positive(t, st.DropAmplification, "the excess is dropped and counted as amplification")
}

// Empty QUIC DATAGRAM frames (3 bytes each, many per packet) do not become
// a flood of 28-byte packets at the target.
func TestNoAmplificationEmptyQUICDatagrams(t *testing.T) {
	sink := newUDPSink(t)
	env := startProxy(t, proxy.Config{RingSize: 1024})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, sink.addr()).StatusCode)
	d := quicvarint.Append(nil, uint64(str.StreamID())/4)
	d = quicvarint.Append(d, 0) // context 0, empty payload
	start := time.Now()
	// In bursts the proxy keeps up with, so that no queue on the way
	// drops what the amplification bound must.
	const bursts, burst = 300, 100
	for i := range bursts {
		for range burst {
			require.NoError(t, c.qc.SendDatagram(d))
		}
		keepUp(t, env, func(st proxy.Stats) uint64 { return st.Router.Dispatched }, uint64((i+1)*burst))
	}
	elapsed := time.Since(start)
	checkAmplification(t, env, sink, c.qc.ConnectionStats().BytesSent, elapsed)
}

// Empty DATAGRAM capsules on the request stream (3 bytes each) do not
// either.
func TestNoAmplificationEmptyCapsules(t *testing.T) {
	sink := newUDPSink(t)
	env := startProxy(t, proxy.Config{RingSize: 1024, MaxCapsule: 1 << 20})
	c := env.rawTunnelDial(t)
	str := c.open(t)
	require.Equal(t, 200, c.connect(t, str, sink.addr()).StatusCode)
	const bursts, burst = 300, 100
	chunk := bytes.Repeat([]byte{0x00, 0x01, 0x00}, burst) // DATAGRAM, length 1, context 0
	start := time.Now()
	for i := range bursts {
		_, err := str.Write(chunk)
		require.NoError(t, err)
		keepUp(t, env, func(st proxy.Stats) uint64 { return st.CapsuleDatagrams }, uint64((i+1)*burst))
	}
	elapsed := time.Since(start)
	checkAmplification(t, env, sink, c.qc.ConnectionStats().BytesSent, elapsed)
}

// keepUp waits (a little, bounded) until count reaches want, and then
// until the router has handed everything to the tunnel.
func keepUp(t *testing.T, env *proxyEnv, count func(proxy.Stats) uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		st := env.proxy.Stats()
		if count(st) >= want && st.Router.Queued == 0 {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}
