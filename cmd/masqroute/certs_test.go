package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/echo"
)

// testCert is a CA and a certificate for 127.0.0.1 it signed.
type testCert struct {
	ca   *selfSignedCA
	leaf *tls.Certificate
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	ca, err := newSelfSignedCA()
	require.NoError(t, err)
	leaf, err := ca.issue([]string{"127.0.0.1", "localhost"})
	require.NoError(t, err)
	return testCert{ca: ca, leaf: leaf}
}

// write writes the certificate and its key as the -cert and -key files.
func (c testCert) write(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(c.leaf.PrivateKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.leaf.Certificate[0]}), 0o644))
}

// clientTLS trusts the certificate's CA only.
func (c testCert) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

func TestCertStoreReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a, b := newTestCert(t), newTestCert(t)
	a.write(t, certFile, keyFile)
	s, err := loadCertStore(certFile, keyFile)
	require.NoError(t, err)
	served := func() *tls.Certificate {
		c, err := s.serverTLS().GetCertificate(&tls.ClientHelloInfo{})
		require.NoError(t, err)
		return c
	}
	require.Equal(t, a.leaf.Leaf.SerialNumber, served().Leaf.SerialNumber)

	b.write(t, certFile, keyFile)
	require.NoError(t, s.load())
	require.Equal(t, b.leaf.Leaf.SerialNumber, served().Leaf.SerialNumber)

	// A broken file or a key of another certificate: the old one stays.
	require.NoError(t, os.WriteFile(certFile, []byte("not PEM"), 0o644))
	require.Error(t, s.load())
	require.Equal(t, b.leaf.Leaf.SerialNumber, served().Leaf.SerialNumber)
	a.write(t, certFile, filepath.Join(dir, "a-key.pem"))
	b.write(t, filepath.Join(dir, "b-cert.pem"), keyFile)
	require.ErrorContains(t, s.load(), "private key does not match")
	require.Equal(t, b.leaf.Leaf.SerialNumber, served().Leaf.SerialNumber)

	require.Error(t, staticCertStore(a.leaf).load(), "a self-signed store has nothing to reload")
}

// dialLoopback connects a client to the proxy at addr from a UDP socket on
// 127.0.0.1 (client.Dial would bind the wildcard address), closed at the
// end of the test.
func dialLoopback(t *testing.T, ctx context.Context, addr string, tlsConf *tls.Config) (*client.Conn, error) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	raddr, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	qc, err := tr.Dial(ctx, raddr, tlsConf, &quic.Config{EnableDatagrams: true})
	if err != nil {
		return nil, err
	}
	return client.NewConn(qc, addr, &client.Config{Logger: slog.New(slog.DiscardHandler)})
}

// servedSerial is the serial number of the certificate the proxy presents
// to a new connection. It looks instead of verifying: a handshake that
// fails leaves the server's side of it in quic-go's transport for a while,
// which goleak would report.
func servedSerial(t *testing.T, dial func(*tls.Config) (*client.Conn, error)) *big.Int {
	t.Helper()
	var serial *big.Int
	conn, err := dial(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber
			return nil
		}})
	require.NoError(t, err)
	conn.Close()
	return serial
}

// TestSIGHUPReloadsCertificate: SIGHUP swaps the certificate new
// connections get while a tunnel on an old connection carries on; a
// broken certificate file keeps the old one and logs an error.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	// This test's own subscription keeps a SIGHUP from ending the test
	// process should the daemon not be listening for it.
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a, b := newTestCert(t), newTestCert(t)
	a.write(t, certFile, keyFile)
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	d := startDaemon(t, "-cert", certFile, "-key", keyFile, "-allow", "127.0.0.1/32", "-listen", "127.0.0.1:0",
		"-metrics", "", "-pprof", "", "-gops=false")
	proxyAddr := d.logValue(t, "listen")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(tlsConf *tls.Config) (*client.Conn, error) { return dialLoopback(t, ctx, proxyAddr, tlsConf) }
	conn, err := dial(a.clientTLS())
	require.NoError(t, err)
	defer conn.Close()
	u, err := conn.DialUDP(ctx, es.Addr().String())
	require.NoError(t, err)
	defer u.Close()
	echoes := func(payload string) {
		t.Helper()
		_, err := u.Write([]byte(payload))
		require.NoError(t, err)
		require.NoError(t, u.SetReadDeadline(time.Now().Add(5*time.Second)))
		buf := make([]byte, 64)
		n, err := u.Read(buf)
		require.NoError(t, err)
		require.Equal(t, payload, string(buf[:n]))
	}
	echoes("before")

	sighup := func(wantLog string) {
		t.Helper()
		before := strings.Count(d.stderr.String(), wantLog)
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Count(d.stderr.String(), wantLog) > before },
			5*time.Second, 5*time.Millisecond, "no %q after SIGHUP:\n%s", wantLog, d.stderr.String())
	}
	b.write(t, certFile, keyFile)
	sighup(`msg="serving reloaded certificate" component=tls`)

	echoes("after reload") // the tunnel on the old connection is still up
	require.Equal(t, b.leaf.Leaf.SerialNumber, servedSerial(t, dial), "a new connection gets the new certificate")
	connB, err := dial(b.clientTLS())
	require.NoError(t, err)
	connB.Close()

	require.NoError(t, os.WriteFile(certFile, []byte("half-written"), 0o644))
	sighup(`level=ERROR msg="reload failed; the old one stays" component=daemon what=certificate`)
	require.Equal(t, b.leaf.Leaf.SerialNumber, servedSerial(t, dial), "the last good certificate is still served")
	echoes("after a failed reload")
}
