package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/echo"
)

// TLS session resumption and 0-RTT where the second connection lands
// somewhere else than the first: on another transport of the same daemon
// (the kernel hashes each client's Initial to a socket), or on another
// instance of the fleet (the load balancer does). The client's session
// cache holds the ticket the first connection got.

// ticketCache is a client session cache that says when a ticket arrived.
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func newTicketCache() *ticketCache {
	return &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(8), put: make(chan struct{}, 64)}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// waitTicket waits for the ticket of a connection just made.
func (c *ticketCache) waitTicket(t *testing.T) {
	t.Helper()
	select {
	case <-c.put:
	case <-time.After(5 * time.Second):
		t.Fatal("no session ticket")
	}
}

// fleetDaemon is a daemon in this process with its metrics and CA.
type fleetDaemon struct {
	addr, metrics string
	ca            string      // its CA file
	tls           *tls.Config // trusts its CA
}

func startFleetDaemon(t *testing.T, target string, args ...string) *fleetDaemon {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	d := startDaemon(t, append([]string{"-self-signed", "-write-ca", caFile, "-listen", "127.0.0.1:0", "-log-format", "json",
		"-metrics", "127.0.0.1:0", "-pprof", "", "-allow", target, "-shutdown-timeout", "1s"}, args...)...)
	started := startedRecord(t, d)
	return &fleetDaemon{addr: started["listen"].(string), metrics: started["metrics"].(string), ca: caFile, tls: trustCAs(t, caFile)}
}

// accepted is how many connections each of n transports took.
func (d *fleetDaemon) accepted(t *testing.T, n int) []float64 {
	t.Helper()
	_, body := get(t, d.metrics)
	out := make([]float64, n)
	for i := range out {
		out[i] = metricValue(t, body, fmt.Sprintf(`masqroute_quic_transport_connections_total{transport="%d"}`, i))
	}
	return out
}

// dial makes one connection to d from a new source port (with quic-go's
// DialAddrEarly, so that it offers 0-RTT where it holds a ticket) and
// returns it with the transport that took it, once the handshake is done.
func (d *fleetDaemon) dial(t *testing.T, tlsConf *tls.Config, transports int) (*quic.Conn, int) {
	t.Helper()
	before := d.accepted(t, transports)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddrEarly(ctx, d.addr, tlsConf, &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	select {
	case <-qc.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("handshake did not complete")
	}
	after := d.accepted(t, transports)
	for i := range after {
		if after[i] > before[i] {
			return qc, i
		}
	}
	t.Fatalf("no transport counted the connection: %v → %v", before, after)
	return nil, 0
}

// tunnelEchoes opens a tunnel to target on qc and checks that it echoes.
func tunnelEchoes(t *testing.T, qc *quic.Conn, authority, target string) {
	t.Helper()
	conn, err := client.NewConn(qc, authority, nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := conn.DialUDP(ctx, target)
	require.NoError(t, err)
	require.NoError(t, (&relayClient{qc: qc, conn: conn, udp: u}).echo(2))
}

// clientWithCache is d's TLS client configuration with cache.
func clientWithCache(base *tls.Config, cache tls.ClientSessionCache) *tls.Config {
	c := base.Clone()
	c.ClientSessionCache = cache
	return c
}

// resumeOnOtherTransport dials d until a connection lands on a transport
// other than first's (the kernel's hash picks it: each try has 1/2) and
// returns it; every connection on the way must have resumed.
func resumeOnOtherTransport(t *testing.T, d *fleetDaemon, tlsConf *tls.Config, first int) *quic.Conn {
	t.Helper()
	for range 30 {
		qc, tr := d.dial(t, tlsConf, 2)
		require.True(t, qc.ConnectionState().TLS.DidResume, "transport %d did not resume", tr)
		if tr != first {
			return qc
		}
		qc.CloseWithError(0, "")
	}
	t.Fatal("30 connections, none on the other transport")
	return nil
}

// TestResumptionAcrossTransports: a ticket from one transport resumes on
// the other transport of the same daemon, without -fleet-key-file (every
// transport serves one tls.Config), and so does 0-RTT with -allow-0rtt;
// without -allow-0rtt the same client resumes but is refused 0-RTT.
func TestResumptionAcrossTransports(t *testing.T) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	target := es.Addr().String()
	for _, zeroRTT := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-0rtt=%v", zeroRTT), func(t *testing.T) {
			d := startFleetDaemon(t, es.Addr().Addr().String(), "-transports", "2", fmt.Sprintf("-allow-0rtt=%v", zeroRTT))
			cache := newTicketCache()
			tlsConf := clientWithCache(d.tls, cache)
			qc, first := d.dial(t, tlsConf, 2)
			require.False(t, qc.ConnectionState().TLS.DidResume, "the first connection has no ticket")
			tunnelEchoes(t, qc, d.addr, target)
			cache.waitTicket(t)

			qc = resumeOnOtherTransport(t, d, tlsConf, first)
			require.Equal(t, zeroRTT, qc.ConnectionState().Used0RTT, "0-RTT accepted")
			tunnelEchoes(t, qc, d.addr, target)
		})
	}
}

// TestResumptionAcrossInstances: two daemons with different -server-id
// and the same -fleet-key-file (as behind a load balancer): a ticket from
// one resumes on the other, with 0-RTT under -allow-0rtt. A third daemon
// with another key file does not resume it.
func TestResumptionAcrossInstances(t *testing.T) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	target := es.Addr().String()
	dir := t.TempDir()
	keys, otherKeys := filepath.Join(dir, "keys"), filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(keys, []byte(fleetKeys), 0o600))
	other := "token " + hex64('4') + "\nreset " + hex64('5') + "\nticket " + hex64('6') + "\n"
	require.NoError(t, os.WriteFile(otherKeys, []byte(other), 0o600))
	start := func(id, keyFile string) *fleetDaemon {
		return startFleetDaemon(t, es.Addr().Addr().String(), "-transports", "1", "-server-id", id,
			"-fleet-key-file", keyFile, "-allow-0rtt")
	}
	a := start("0x00000000000000a1", keys)
	b := start("0x00000000000000b2", keys)
	c := start("0x00000000000000c3", otherKeys)

	cache := newTicketCache()
	// One client configuration trusts every instance's CA, as a fleet's
	// clients trust its one CA.
	tlsConf := clientWithCache(trustCAs(t, a.ca, b.ca, c.ca), cache)
	qc, _ := a.dial(t, tlsConf, 1)
	require.False(t, qc.ConnectionState().TLS.DidResume)
	cache.waitTicket(t)

	qc, _ = b.dial(t, tlsConf, 1)
	require.True(t, qc.ConnectionState().TLS.DidResume, "instance b resumes a's ticket")
	require.True(t, qc.ConnectionState().Used0RTT, "instance b accepts 0-RTT with a's ticket")
	tunnelEchoes(t, qc, b.addr, target)
	cache.waitTicket(t) // b's ticket replaces a's

	qc, _ = c.dial(t, tlsConf, 1)
	require.False(t, qc.ConnectionState().TLS.DidResume, "another fleet's ticket keys cannot resume")
	require.False(t, qc.ConnectionState().Used0RTT)
}

func hex64(digit byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = digit
	}
	return string(b)
}
