package h3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitShort bounds every wait for something that should happen at once on
// loopback.
const waitShort = 5 * time.Second

var (
	certOnce sync.Once
	certTLS  tls.Certificate
	certPool *x509.CertPool
)

// testCert returns a self-signed certificate for localhost and 127.0.0.1.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "localhost"},
			DNSNames:              []string{"localhost"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		certTLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
		certPool = x509.NewCertPool()
		certPool.AddCert(cert)
	})
	return certTLS, certPool
}

// serverConn is one connection of a testServer, with Serve's result.
type serverConn struct {
	*Conn
	qc   *quic.Conn
	done chan struct{} // closed when Serve returned
	err  error         // Serve's result, valid once done is closed
}

// wait waits for Serve to return and returns its result.
func (sc *serverConn) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-sc.done:
		return sc.err
	case <-time.After(waitShort):
		t.Fatal("Serve did not return")
		return nil
	}
}

// testServer accepts QUIC connections on loopback and serves each with a
// Conn. Cleanup closes the listener and every connection and waits for
// every Serve to return.
type testServer struct {
	ln    *quic.Listener
	conns chan *serverConn
	wg    sync.WaitGroup

	mu  sync.Mutex
	all []*serverConn
}

// listen listens on loopback through a quic.Transport of its own, which
// cleanup closes at once (a listener from quic.ListenAddr keeps its socket
// for 3 PTOs after its last connection closed, and goleak would see it).
func listen(t *testing.T, conf *quic.Config) *quic.Listener {
	t.Helper()
	cert, _ := testCert(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		tr.Close()
		udp.Close()
	})
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h3"}}, conf)
	require.NoError(t, err)
	return ln
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startServerQUIC(t, cfg, &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 10 * time.Second})
}

func startServerQUIC(t *testing.T, cfg Config, qconf *quic.Config) *testServer {
	t.Helper()
	ln := listen(t, qconf)
	s := &testServer{ln: ln, conns: make(chan *serverConn, 16)}
	s.wg.Go(func() {
		for {
			qc, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			c, err := NewConn(qc, &cfg)
			if err != nil {
				t.Errorf("NewConn: %v", err)
				qc.CloseWithError(0, "")
				continue
			}
			sc := &serverConn{Conn: c, qc: qc, done: make(chan struct{})}
			s.mu.Lock()
			s.all = append(s.all, sc)
			s.mu.Unlock()
			s.wg.Go(func() {
				sc.err = c.Serve()
				close(sc.done)
			})
			s.conns <- sc
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, sc := range s.all {
			sc.qc.CloseWithError(0, "test done")
		}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitShort):
			t.Error("server goroutines did not end")
		}
	})
	return s
}

// next returns the server side of the next accepted connection.
func (s *testServer) next(t *testing.T) *serverConn {
	t.Helper()
	select {
	case sc := <-s.conns:
		return sc
	case <-time.After(waitShort):
		t.Fatal("no connection accepted")
		return nil
	}
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

// dialQUIC dials the server with ALPN h3; cleanup closes the connection.
func dialQUIC(t *testing.T, s *testServer, datagrams bool) *quic.Conn {
	t.Helper()
	_, pool := testCert(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.addr(),
		&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h3"}},
		&quic.Config{EnableDatagrams: datagrams, MaxIdleTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return qc
}

// dialClient connects quic-go's stock HTTP/3 client to the server and
// returns it with the server side of the connection.
func dialClient(t *testing.T, s *testServer) (*http3.ClientConn, *serverConn) {
	t.Helper()
	qc := dialQUIC(t, s, true)
	tr := &http3.Transport{EnableDatagrams: true}
	return tr.NewClientConn(qc), s.next(t)
}

// do runs req through the stock client and reads and closes the body.
func do(cc *http3.ClientConn, req *http.Request) (*http.Response, string, error) {
	rsp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	return rsp, string(b), err
}

// get runs a GET through the stock client and returns status and body.
func get(t *testing.T, cc *http3.ClientConn, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://localhost"+path, nil)
	require.NoError(t, err)
	rsp, body, err := do(cc, req)
	require.NoError(t, err)
	return rsp, body
}

// connError waits for qc to close and returns the application error code
// the server closed it with.
func waitConnError(t *testing.T, qc *quic.Conn) wire.ErrorCode {
	t.Helper()
	select {
	case <-qc.Context().Done():
	case <-time.After(waitShort):
		t.Fatal("connection not closed")
	}
	var ae *quic.ApplicationError
	require.ErrorAs(t, context.Cause(qc.Context()), &ae)
	require.True(t, ae.Remote, "closed by the client: %v", ae)
	return wire.ErrorCode(ae.ErrorCode)
}

// waitReset reads str until it fails and returns the code of the peer's
// RESET_STREAM.
func waitReset(t *testing.T, str io.Reader) wire.ErrorCode {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, str)
		done <- err
	}()
	select {
	case err := <-done:
		var se *quic.StreamError
		require.ErrorAs(t, err, &se, "stream ended without a reset")
		require.True(t, se.Remote)
		return wire.ErrorCode(se.ErrorCode)
	case <-time.After(waitShort):
		t.Fatal("stream not reset")
		return 0
	}
}

// rawFrame returns an HTTP/3 frame.
func rawFrame(typ uint64, payload []byte) []byte {
	return append(appendFrameHeader(nil, typ, uint64(len(payload))), payload...)
}

// fieldBlock QPACK-encodes name/value pairs, as they are, case included.
func fieldBlock(pairs ...string) []byte {
	var b bytes.Buffer
	enc := qpack.NewEncoder(&b)
	for i := 0; i < len(pairs); i += 2 {
		if err := enc.WriteField(qpack.HeaderField{Name: pairs[i], Value: pairs[i+1]}); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

// headersFrame returns a HEADERS frame carrying name/value pairs.
func headersFrame(pairs ...string) []byte { return rawFrame(wire.FrameHeaders, fieldBlock(pairs...)) }

// getFields are the pseudo-headers of a well-formed GET.
var getFields = []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"}

// readResponse reads a response head from a raw request stream: frames up
// to the first HEADERS, decoded.
func readResponse(t *testing.T, str io.Reader) map[string]string {
	t.Helper()
	fr := frameReader{r: str}
	typ, length, err := fr.next()
	require.NoError(t, err)
	require.EqualValues(t, wire.FrameHeaders, typ)
	block, err := fr.readPayload(length)
	require.NoError(t, err)
	fields := map[string]string{}
	decode := qpack.NewDecoder().Decode(block)
	for {
		f, err := decode()
		if errors.Is(err, io.EOF) {
			return fields
		}
		require.NoError(t, err)
		fields[f.Name] = f.Value
	}
}

// controlStream opens a raw client control stream and sends prefix.
func openUni(t *testing.T, qc *quic.Conn, typ uint64, data ...[]byte) *quic.SendStream {
	t.Helper()
	str, err := qc.OpenUniStream()
	require.NoError(t, err)
	b := quicvarint.Append(nil, typ)
	for _, d := range data {
		b = append(b, d...)
	}
	_, err = str.Write(b)
	require.NoError(t, err)
	return str
}

// clientSettings is a client SETTINGS frame.
func clientSettings(s wire.Settings) []byte { return wire.AppendSettingsFrame(nil, s) }

// handlerFunc wraps f, recording the requests' results on a channel.
type capture[T any] chan T

func (c capture[T]) get(t *testing.T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitShort):
		t.Fatal("handler result missing")
		var zero T
		return zero
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
