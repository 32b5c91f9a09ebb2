package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

func writeTokens(t *testing.T, lines ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return f
}

// connectWith sends a CONNECT-UDP request to the echo target with the given
// header set, over the raw client.
func connectWith(t *testing.T, env *proxyEnv, c *rawClient, key, value string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := url.Parse("https://" + env.addr + udpPath(env.echo.Addr().Addr().String(), itoa(env.echo.Addr().Port())))
	require.NoError(t, err)
	req := (&http.Request{Method: http.MethodConnect, Proto: "connect-udp", Host: u.Host, URL: u,
		Header: http.Header{"Capsule-Protocol": {"?1"}}}).WithContext(ctx)
	if key != "" {
		req.Header.Set(key, value)
	}
	resp, err := c.cc.RoundTrip(req)
	require.NoError(t, err)
	return resp
}

// Bearer tokens: a request without a listed token is answered 407 with
// Proxy-Authenticate: Bearer and Proxy-Status, before anything else about it
// is looked at; each refusal is counted by reason; a reloaded file takes
// effect at once.
func TestBearerTokens(t *testing.T) {
	file := writeTokens(t, "# clients", proxy.HashToken("good-token")+" alice", "")
	ts, err := proxy.LoadTokenFile(file)
	require.NoError(t, err)
	env := startProxy(t, proxy.Config{Tokens: ts})
	c := env.rawDial(t)

	refused := func(key, value string) {
		t.Helper()
		resp := connectWith(t, env, c, key, value)
		checkRefusal(t, resp, http.StatusProxyAuthRequired, "http_request_denied")
		require.True(t, strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Bearer"), resp.Header.Get("Proxy-Authenticate"))
	}
	refused("", "")
	refused("Proxy-Authorization", "Basic Z29vZC10b2tlbg==")
	refused("Proxy-Authorization", "Bearer bad-token")
	refused("Proxy-Authorization", "Bearer good-token2")
	// Even a request that would be a 404 learns nothing without a token.
	resp := c.do(t, http.MethodConnect, "connect-udp", "/nowhere")
	require.Equal(t, http.StatusProxyAuthRequired, resp.StatusCode)

	require.Equal(t, 200, connectWith(t, env, c, "Proxy-Authorization", "Bearer good-token").StatusCode)
	require.Equal(t, 200, connectWith(t, env, c, "Authorization", "bearer good-token").StatusCode)

	st := env.proxy.Stats()
	require.Equal(t, uint64(2), st.AuthRefused[proxy.AuthTokenMissing])
	require.Equal(t, uint64(1), st.AuthRefused[proxy.AuthTokenMalformed])
	require.Equal(t, uint64(2), st.AuthRefused[proxy.AuthTokenInvalid])
	require.Equal(t, uint64(5), st.Rejected[http.StatusProxyAuthRequired])

	// Reload: the old token goes, a new one comes.
	require.NoError(t, os.WriteFile(file, []byte(proxy.HashToken("next-token")+"\n"), 0o600))
	require.NoError(t, ts.Reload())
	refused("Proxy-Authorization", "Bearer good-token")
	require.Equal(t, 200, connectWith(t, env, c, "Proxy-Authorization", "Bearer next-token").StatusCode)
	// A broken file keeps the old set.
	require.NoError(t, os.WriteFile(file, []byte("next-token\n"), 0o600))
	require.Error(t, ts.Reload())
	require.True(t, ts.Contains("next-token"))
}

// The token file holds hashes only: a token in the clear is an error, not a
// token.
func TestTokenFileRefusesPlaintext(t *testing.T) {
	for _, content := range []string{
		"good-token\n",
		"sha256:1234\n",
		proxy.HashToken("x") + "00\n",
		"sha512:" + strings.Repeat("0", 64) + "\n",
		"# only a comment\n",
	} {
		_, err := proxy.ParseTokenHashes(strings.NewReader(content))
		require.Error(t, err, "%q", content)
	}
	h, err := proxy.ParseTokenHashes(strings.NewReader("\n  " + proxy.HashToken("a") + "\tlabel with words\n# c\n" + proxy.HashToken("b")))
	require.NoError(t, err)
	require.Len(t, h, 2)
}

// clientCertCA makes a CA that signs client certificates, and one client
// certificate from it.
func clientCertCA(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: ca}
}

// mTLS: without a certificate from the CA the handshake fails, and each
// failure is counted; with one, tunnels open.
func TestClientCertificates(t *testing.T) {
	pool, cert := clientCertCA(t)
	_, otherCert := clientCertCA(t)
	env := startProxy(t, proxy.Config{ClientCAs: pool})
	dial := func(certs ...tls.Certificate) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		tc := clientTLS(t)
		tc.Certificates = certs
		qc, err := quic.DialAddr(ctx, env.addr, tc, &quic.Config{EnableDatagrams: true})
		if err != nil {
			return err
		}
		defer qc.CloseWithError(0, "")
		// TLS 1.3: the client learns of a refused certificate only after
		// its handshake completed; the server closes the connection.
		select {
		case <-qc.Context().Done():
			return context.Cause(qc.Context())
		case <-time.After(300 * time.Millisecond):
			return nil
		}
	}
	require.Error(t, dial())
	require.Error(t, dial(otherCert))
	require.NoError(t, dial(cert))
	st := env.proxy.Stats()
	require.Equal(t, uint64(1), st.AuthRefused[proxy.AuthCertMissing])
	require.Equal(t, uint64(1), st.AuthRefused[proxy.AuthCertInvalid])
}
