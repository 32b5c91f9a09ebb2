package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

// TestOpenProxyRefused: without -auth-tokens, -client-ca, -dev or
// -allow-unauthenticated, a non-loopback -listen address is refused on one
// line with a non-zero exit, before anything listens.
func TestOpenProxyRefused(t *testing.T) {
	for _, listen := range []string{":4433", "0.0.0.0:0", "[::]:0", "192.0.2.1:443", "proxy.example:443"} {
		var out, errOut, report bytes.Buffer
		err := run(context.Background(), []string{"-self-signed", "-listen", listen, "-metrics", "", "-pprof", "", "-gops=false"}, &out, &errOut)
		require.ErrorIs(t, err, errOpenProxy, listen)
		require.Equal(t, 1, exitCode(err, &report))
		require.Empty(t, out.String()+errOut.String())
		require.Equal(t, 1, strings.Count(report.String(), "\n"), report.String())
		require.Contains(t, report.String(), "-auth-tokens")
	}
	// Any one of the ways out is enough (flags only: nothing listens).
	tokens := filepath.Join(t.TempDir(), "tokens")
	for _, extra := range [][]string{
		{"-allow-unauthenticated"}, {"-auth-tokens", tokens}, {"-client-ca", "ca.pem"}, {"-dev"},
	} {
		_, err := parseServeFlags(append([]string{"-self-signed", "-listen", ":4433"}, extra...), io.Discard)
		require.NoError(t, err, "%v", extra)
	}
	for _, l := range []string{"127.0.0.1:4433", "[::1]:4433", "localhost:4433", "127.1.2.3:0"} {
		require.True(t, isLoopbackListen(l), l)
	}
}

// TestTokenAuthEndToEnd: with -auth-tokens, the client without a token is
// refused 407; with -token-file it gets through; SIGHUP reads the token file
// again (a revoked token is refused from then on).
func TestTokenAuthEndToEnd(t *testing.T) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	dir := t.TempDir()
	tokA, tokB := filepath.Join(dir, "a.token"), filepath.Join(dir, "b.token")
	var lineA, lineB bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"token", "-token-file", tokA, "-label", "client a"}, &lineA, io.Discard))
	require.NoError(t, run(context.Background(), []string{"token", "-token-file", tokB}, &lineB, io.Discard))
	require.Regexp(t, `^sha256:[0-9a-f]{64} client_a\n$`, lineA.String())
	fi, err := os.Stat(tokA)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Error(t, run(context.Background(), []string{"token", "-token-file", tokA}, io.Discard, io.Discard), "never overwrites")
	tokens := filepath.Join(dir, "tokens.txt")
	require.NoError(t, os.WriteFile(tokens, lineA.Bytes(), 0o600))

	d := startDaemon(t, "-self-signed", "-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops=false",
		"-auth-tokens", tokens, "-allow", "127.0.0.1/32")
	ca := regexp.MustCompile(`ca=(\S+)`).FindStringSubmatch(d.stderr.String())
	require.NotNil(t, ca)
	clientRun := func(extra ...string) error {
		args := append([]string{"client", "-proxy", d.logValue(t, "listen"), "-ca", ca[1],
			"-target", es.Addr().String(), "-count", "1", "-interval", "1ms"}, extra...)
		return run(context.Background(), args, io.Discard, io.Discard)
	}
	err = clientRun()
	require.ErrorContains(t, err, "407")
	require.ErrorContains(t, err, "http_request_denied")
	require.ErrorContains(t, clientRun("-token-file", tokB), "407")
	require.NoError(t, clientRun("-token-file", tokA))
	require.Contains(t, d.stderr.String(), "authentication refused", "refusals are logged")

	// Revoke a, admit b; SIGHUP.
	require.NoError(t, os.WriteFile(tokens, lineB.Bytes(), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(d.stderr.String(), "bearer tokens reloaded") },
		5*time.Second, 5*time.Millisecond)
	require.ErrorContains(t, clientRun("-token-file", tokA), "407")
	require.NoError(t, clientRun("-token-file", tokB))
}

// A daemon started without bounds still has some: connections, tunnels
// and rates toward targets are not unlimited by default.
func TestDefaultBoundsAreNotUnlimited(t *testing.T) {
	c, err := parseServeFlags([]string{"-self-signed"}, io.Discard)
	require.NoError(t, err)
	pc := c.proxyConfig(nil, nil, daemonAuth{}, nil)
	require.Equal(t, defaultMaxConns, pc.MaxConns)
	require.Equal(t, defaultMaxTunnels, pc.MaxTunnels)
	require.Positive(t, pc.MaxTunnelsPerConn)
	require.EqualValues(t, proxy.DefaultRateTunnelDatagrams, pc.RateTunnelDatagrams)
	require.EqualValues(t, proxy.DefaultRateConnBytes, pc.RateConnBytes)
	require.Equal(t, proxy.DefaultRateBurst, pc.RateBurst)
}
