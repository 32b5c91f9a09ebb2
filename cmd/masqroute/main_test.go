package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gops/signal"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

// TestMain re-executes the test binary with GODEBUG=http2xconnect=1, which
// the daemon's HTTP/2 carrier needs from the start (as main does).
func TestMain(m *testing.M) {
	if err := proxy.ReexecWithExtendedConnect(); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer the daemon writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningDaemon is run(ctx, args) on its own goroutine.
type runningDaemon struct {
	stdout, stderr syncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startDaemon runs the daemon with args and waits until it logged that it
// started (and, with -dev, printed its banner). Cleanup stops it.
func startDaemon(t *testing.T, args ...string) *runningDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDaemon{cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- run(ctx, args, &d.stdout, &d.stderr) }()
	t.Cleanup(func() { d.stop(t) })
	dev := false
	for _, a := range args {
		dev = dev || a == "-dev"
	}
	deadline := time.Now().Add(10 * time.Second)
	for !(strings.Contains(d.stderr.String(), startedLog) || strings.Contains(d.stderr.String(), startedJSON)) ||
		(dev && !strings.Contains(d.stdout.String(), bannerEnd)) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon ended early: %v\nstderr:\n%s", err, d.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not start\nstderr:\n%s", d.stderr.String())
		}
	}
	return d
}

// stop cancels the daemon's context (as SIGINT does) and checks that it
// exits cleanly and soon. It is idempotent.
func (d *runningDaemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err, ok := <-d.done:
		if ok {
			close(d.done)
			require.NoError(t, err, "stderr:\n%s", d.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not stop\nstderr:\n%s", d.stderr.String())
	}
}

// startedLog is how the daemon's "started" record begins in text format.
const startedLog = `msg=started component=daemon`

// startedJSON is the same with -log-format json.
const startedJSON = `"msg":"started","component":"daemon"`

// logValue is the value of key in the daemon's "started" log.
func (d *runningDaemon) logValue(t *testing.T, key string) string {
	t.Helper()
	m := regexp.MustCompile(startedLog + `.* ` + key + `=(\S*)`).FindStringSubmatch(d.stderr.String())
	require.NotNil(t, m, "no %s in:\n%s", key, d.stderr.String())
	return m[1]
}

// bannerLine is the banner line that starts with s (indentation aside) or,
// if none does, the first that contains it.
func bannerLine(t *testing.T, banner, s string) string {
	t.Helper()
	for line := range strings.Lines(banner) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, s) {
			return line
		}
	}
	for line := range strings.Lines(banner) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no %q in the banner:\n%s", s, banner)
	return ""
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// metricValue is the value of the sample line that starts with series.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(exposition)
	require.NotNil(t, m, "no %s in /metrics", series)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestDevModeEndToEnd is what `make run` and a newcomer do: start -dev, run
// the client command the banner prints, look at /metrics and pprof, stop.
func TestDevModeEndToEnd(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	d := startDaemon(t, "-dev", "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-pprof", "127.0.0.1:0",
		"-gops=false", "-write-ca", caFile)
	banner := d.stdout.String()
	t.Logf("banner:\n%s", banner)

	// The banner shows the real ports, the CA file and the loud warning.
	listen := d.logValue(t, "listen")
	require.NotContains(t, listen, ":0")
	require.Contains(t, bannerLine(t, banner, "proxy "), listen)
	require.Contains(t, bannerLine(t, banner, "proxy "), "HTTP/3, CONNECT-UDP, CONNECT-IP into netstack)")
	require.Contains(t, bannerLine(t, banner, "CA file"), caFile)
	require.Contains(t, banner, "Loopback targets are ALLOWED")
	require.Contains(t, bannerLine(t, banner, "gops "), "off")
	metricsURL := d.logValue(t, "metrics")
	pprofURL := d.logValue(t, "pprof")
	require.Contains(t, bannerLine(t, banner, "metrics "), metricsURL)
	require.Contains(t, bannerLine(t, banner, "pprof "), pprofURL)
	require.NotContains(t, metricsURL+pprofURL, ":0/")
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	require.Contains(t, string(pem), "BEGIN CERTIFICATE")

	// Run the printed client command, quicker.
	cmd := strings.Fields(bannerLine(t, banner, " client -proxy "))
	i := slices.Index(cmd, "client")
	require.Positive(t, i)
	args := append(cmd[i:], "-interval", "5ms")
	require.Contains(t, args, listen)
	var out, errOut syncBuffer
	err = run(context.Background(), args, &out, &errOut)
	t.Logf("client:\n%s%s", out.String(), errOut.String())
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^5 sent, (\d) received`).FindStringSubmatch(out.String())
	require.NotNil(t, m, "no summary")
	received, _ := strconv.Atoi(m[1])
	require.GreaterOrEqual(t, received, 1)
	require.Contains(t, out.String(), "64 bytes from 127.0.0.1:")

	// The printed CONNECT-IP command pings the userspace network's host
	// through connect-ip-go's client.
	ipCmd := strings.Fields(bannerLine(t, banner, " client -ip "))
	ipArgs := append(ipCmd[slices.Index(ipCmd, "client"):], "-interval", "5ms")
	var ipOut, ipErr syncBuffer
	err = run(context.Background(), ipArgs, &ipOut, &ipErr)
	t.Logf("client -ip:\n%s%s", ipOut.String(), ipErr.String())
	require.NoError(t, err)
	require.Empty(t, ipErr.String(), "nothing stray on stderr")
	require.Regexp(t, `(?m)^3 sent, 3 received`, ipOut.String())
	require.Contains(t, ipOut.String(), "from 192.0.2.1: icmp_seq=1 ttl=63")

	// The printed HTTP/2 and HTTP/1.1 commands work too (on TCP, the same
	// port number).
	require.Contains(t, banner, listen+"  (TCP, HTTP/2, HTTP/1.1")
	for _, carrier := range []string{"h2", "h1"} {
		cmd := strings.Fields(bannerLine(t, banner, "-carrier "+carrier))
		args := append(cmd[slices.Index(cmd, "client"):], "-interval", "5ms")
		var out, errOut syncBuffer
		err := run(context.Background(), args, &out, &errOut)
		t.Logf("client -carrier %s:\n%s%s", carrier, out.String(), errOut.String())
		require.NoError(t, err)
		require.Contains(t, out.String(), "("+carrier+")")
		require.Regexp(t, `(?m)^5 sent, [1-5] received`, out.String())
	}

	// Too large for a QUIC datagram: said plainly.
	err = run(context.Background(), append(slices.Clone(args), "-size", "1400", "-count", "1"), io.Discard, io.Discard)
	require.ErrorContains(t, err, "-size 1400 does not fit in one QUIC datagram")

	// The proxy counted it.
	code, body := get(t, metricsURL)
	require.Equal(t, http.StatusOK, code)
	require.GreaterOrEqual(t, metricValue(t, body, `masqroute_tunnels_opened_total{kind="connect-udp"}`), 1.0)
	require.Equal(t, 1.0, metricValue(t, body, `masqroute_tunnels_opened_total{kind="connect-ip"}`))
	require.GreaterOrEqual(t, metricValue(t, body, "masqroute_connections_accepted_total"), 1.0)
	require.GreaterOrEqual(t, metricValue(t, body, `masqroute_datagrams_total{direction="to_target"}`), float64(received))
	require.GreaterOrEqual(t, metricValue(t, body, `masqroute_datagrams_total{direction="to_client"}`), float64(received))
	require.GreaterOrEqual(t, metricValue(t, body, `masqroute_bytes_total{direction="to_client"}`), float64(64*received))
	require.Contains(t, body, "go_goroutines ")
	require.Contains(t, body, "process_start_time_seconds ")

	code, body = get(t, pprofURL)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, _ = get(t, pprofURL+"goroutine?debug=1")
	require.Equal(t, http.StatusOK, code)

	d.stop(t)
	require.Contains(t, d.stderr.String(), `msg=stopped component=daemon`)
	_, err = os.Stat(caFile)
	require.NoError(t, err, "a -write-ca file is the user's: it stays")
	_, err = net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(metricsURL, "/metrics"), "http://"))
	require.Error(t, err, "metrics still served after shutdown")
}

// TestDefaultPolicyRefusesLoopback: without -dev, a tunnel to this host is
// refused (403) and the client says so and fails.
func TestDefaultPolicyRefusesLoopback(t *testing.T) {
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	d := startDaemon(t, "-self-signed", "-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops=false")
	require.Empty(t, d.stdout.String(), "no banner without -dev")
	ca := regexp.MustCompile(`ca=(\S+)`).FindStringSubmatch(d.stderr.String())
	require.NotNil(t, ca, "CA file not logged")
	_, err = os.Stat(ca[1])
	require.NoError(t, err)

	var out syncBuffer
	err = run(context.Background(), []string{"client", "-proxy", d.logValue(t, "listen"), "-ca", ca[1],
		"-target", es.Addr().String(), "-count", "1"}, &out, io.Discard)
	require.ErrorContains(t, err, "refused the tunnel")
	require.ErrorContains(t, err, "403")
	require.Equal(t, 1, exitCode(err, io.Discard))
	require.Zero(t, es.Received.Load())

	d.stop(t)
	_, err = os.Stat(ca[1])
	require.ErrorIs(t, err, os.ErrNotExist, "the default CA file is removed on exit")
}

// TestGopsAgent: -gops starts the agent (its port file names this process)
// and shutdown stops it; outside -dev it is off unless asked for.
func TestGopsAgent(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GOPS_CONFIG_DIR", dir)
	cfg, err := parseServeFlags([]string{"-self-signed"}, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.gops, "off by default outside -dev")
	cfg, err = parseServeFlags([]string{"-dev"}, io.Discard)
	require.NoError(t, err)
	require.True(t, cfg.gops, "on by default with -dev")
	cfg, err = parseServeFlags([]string{"-dev", "-gops=false"}, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.gops)

	d := startDaemon(t, "-self-signed", "-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops")
	require.Equal(t, "true", d.logValue(t, "gops"))
	portFile := filepath.Join(dir, strconv.Itoa(os.Getpid()))
	port, err := os.ReadFile(portFile)
	require.NoError(t, err)

	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", string(port)), 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = conn.Write([]byte{signal.Version})
	require.NoError(t, err)
	version, err := io.ReadAll(conn)
	require.NoError(t, err)
	conn.Close()
	require.Contains(t, string(version), "go1.")

	d.stop(t)
	_, err = os.Stat(portFile)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-h"}, 0, "-listen"},
		{[]string{"client", "-h"}, 0, "-target"},
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-cert", "c.pem"}, 2, "-cert and -key go together"},
		{[]string{"-cert", "c.pem", "-key", "k.pem", "-write-ca", "x"}, 2, "cannot go with -cert"},
		{[]string{"client"}, 2, "-target is required"},
		{[]string{"client", "-target", "127.0.0.1:1", "-size", "4"}, 2, "at least 8"},
		{[]string{"client", "-target", "127.0.0.1:1", "-carrier", "h4"}, 2, "-carrier must be h3, h2, h1 or auto"},
		{[]string{"client", "-ip", "-target", "192.0.2.1", "-carrier", "h2"}, 2, "-ip runs on HTTP/3 only"},
		{[]string{"-self-signed", "-allow", "10.0.0.0/33", "-metrics", "", "-pprof", "", "-gops=false"}, 1, "-allow"},
		{[]string{"-self-signed", "-deny-ports", "9-1", "-metrics", "", "-pprof", "", "-gops=false"}, 1, "-deny-ports"},
		{[]string{"-log-level", "loud"}, 2, "log-level"},
		{[]string{"-ring-size", "0"}, 2, "-ring-size"},
		{[]string{"-pending-buffer", "-1"}, 2, "-pending-buffer"},
		{[]string{"-hold-timeout", "0s"}, 2, "-hold-timeout"},
		{[]string{"-cert", "/nonexistent.pem", "-key", "/nonexistent.key", "-metrics", "", "-pprof", "", "-gops=false"}, 1, "load certificate"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut syncBuffer
			err := run(context.Background(), tc.args, &out, &errOut)
			var report bytes.Buffer
			require.Equal(t, tc.code, exitCode(err, &report), "error %v", err)
			require.Contains(t, errOut.String()+report.String(), tc.msg)
			if tc.code == 0 {
				require.ErrorIs(t, err, flag.ErrHelp)
			}
		})
	}
}

// TestBadFlagIsOneLine: a mistake prints one line and where the usage is,
// not the whole usage text.
func TestBadFlagIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-x"}, "masqroute: flag provided but not defined: -x\nRun 'masqroute -help' for usage.\n"},
		{[]string{"client", "-x"}, "masqroute client: flag provided but not defined: -x\nRun 'masqroute client -help' for usage.\n"},
		{[]string{"-listen"}, "masqroute: flag needs an argument: -listen\nRun 'masqroute -help' for usage.\n"},
		{[]string{"client", "-target", "127.0.0.1:7", "-size", "4"}, "masqroute client: -size must be at least 8\nRun 'masqroute client -help' for usage.\n"},
	} {
		var out, errOut, report bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errOut)
		require.Equal(t, 2, exitCode(err, &report), "%v", tc.args)
		require.Empty(t, out.String())
		require.Empty(t, errOut.String(), "the usage is printed for -help only")
		require.Equal(t, tc.want, report.String())
	}
}

// TestNoCertificateRefused: without -cert, -self-signed or -dev the daemon
// does not make a certificate on its own; it says so on one line and fails.
func TestNoCertificateRefused(t *testing.T) {
	var out, errOut, report bytes.Buffer
	err := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops=false"}, &out, &errOut)
	require.ErrorIs(t, err, errNoCert)
	require.Equal(t, 1, exitCode(err, &report))
	require.Empty(t, out.String()+errOut.String())
	require.Equal(t, 1, strings.Count(report.String(), "\n"))
	require.Contains(t, report.String(), "-self-signed")
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"help"}, &out, io.Discard))
	require.Contains(t, out.String(), "masqroute client [flags]")
}

func TestBusyMetricsPortFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	err = run(context.Background(), []string{"-self-signed", "-listen", "127.0.0.1:0", "-metrics", ln.Addr().String(), "-pprof", "", "-gops=false"},
		io.Discard, io.Discard)
	require.ErrorContains(t, err, "-metrics")
}

func TestCertHosts(t *testing.T) {
	for listen, want := range map[string][]string{
		"127.0.0.1:4433":   {"127.0.0.1", "localhost"},
		"[::1]:4433":       {"::1", "localhost"},
		"localhost:4433":   {"localhost", "127.0.0.1", "::1"},
		"proxy.test:4433":  {"proxy.test", "localhost"},
		"192.0.2.7:443":    {"192.0.2.7", "localhost"},
		":4433":            {"127.0.0.1", "::1", "localhost"},
		"0.0.0.0:4433":     {"127.0.0.1", "::1", "localhost"},
		"[::]:4433":        {"127.0.0.1", "::1", "localhost"},
		"no-port-anywhere": nil,
	} {
		got, err := certHosts(listen)
		if want == nil {
			require.Error(t, err, listen)
			continue
		}
		require.NoError(t, err, listen)
		require.Subset(t, got, want, listen)
	}
}

func TestDialable(t *testing.T) {
	require.Equal(t, "127.0.0.1:9464", dialable("0.0.0.0:9464"))
	require.Equal(t, "[::1]:9464", dialable("[::]:9464"))
	require.Equal(t, "127.0.0.1:9464", dialable(":9464"))
	require.Equal(t, "192.0.2.1:9464", dialable("192.0.2.1:9464"))
}

func TestShellQuote(t *testing.T) {
	require.Equal(t, "/tmp/masqroute-ca-1.pem", shellQuote("/tmp/masqroute-ca-1.pem"))
	require.Equal(t, "'/tmp/my dir/ca.pem'", shellQuote("/tmp/my dir/ca.pem"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
	require.Equal(t, "''", shellQuote(""))
}

func TestClientRefusesUnreachableProxy(t *testing.T) {
	// Nothing answers QUIC on a fresh UDP port that is closed again.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	pc.Close()
	err = run(context.Background(), []string{"client", "-proxy", addr, "-insecure", "-target", "127.0.0.1:7",
		"-timeout", "300ms"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "connect to proxy")
	_, isUsage := errors.AsType[*usageError](err)
	require.False(t, isUsage)
}

// TestShutdownCutsOpenTunnels: a tunnel still open when the signal comes
// may go on for -shutdown-timeout, then it is cut and the daemon exits 0.
func TestShutdownCutsOpenTunnels(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	d := startDaemon(t, "-dev", "-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops=false",
		"-write-ca", caFile, "-shutdown-timeout", "300ms")
	tlsConf, err := devcert.TrustPEMFile(caFile)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, d.logValue(t, "listen"), &client.Config{TLSConfig: tlsConf, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer conn.Close()
	echoAddr := strings.Fields(bannerLine(t, d.stdout.String(), "echo "))[1]
	u, err := conn.DialUDP(ctx, echoAddr)
	require.NoError(t, err)
	defer u.Close()

	start := time.Now()
	d.stop(t)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the open tunnel got its grace period")
	require.Contains(t, d.stderr.String(), "cut short")
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client's connection outlived the proxy")
	}
}

// The queue and hold flags reach the engine's configuration; -hold 0 turns
// holding off (the engine reads a zero Max as "default").
func TestQueueFlags(t *testing.T) {
	c, err := parseServeFlags([]string{"-self-signed", "-ring-size", "512", "-pending-buffer", "7", "-hold", "0", "-hold-timeout", "250ms"}, io.Discard)
	require.NoError(t, err)
	pc := c.proxyConfig(nil, nil, daemonAuth{}, nil)
	require.Equal(t, 512, pc.RingSize)
	require.Equal(t, 7, pc.PendingBuffer)
	require.Equal(t, engine.HoldOptions{Max: -1, Timeout: 250 * time.Millisecond}, pc.Hold)

	c, err = parseServeFlags([]string{"-self-signed"}, io.Discard)
	require.NoError(t, err)
	pc = c.proxyConfig(nil, nil, daemonAuth{}, nil)
	require.Equal(t, engine.HoldOptions{Max: proxy.DefaultHoldMax, Timeout: engine.DefaultHoldTimeout}, pc.Hold)
	require.Equal(t, engine.DefaultRingSize, pc.RingSize)
}

// Only a daemon that serves HTTP/2 (-h2, or -dev) restarts itself with
// GODEBUG=http2xconnect=1; subcommands never do.
func TestServesH2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-dev"}, true},
		{[]string{"-dev", "-dev-dir", ".dev"}, true},
		{[]string{"--h2"}, true},
		{[]string{"-self-signed", "-h2=true"}, true},
		{[]string{"-dev", "-h2=false"}, false},
		{[]string{"-self-signed"}, false},
		{[]string{"-self-signed", "-h1"}, false},
		{[]string{"client", "-dev"}, false},
		{[]string{"token", "-h2"}, false},
		{nil, false},
	} {
		require.Equal(t, tc.want, servesH2(tc.args), "%q", tc.args)
	}
	require.True(t, proxy.ExtendedConnectEnabled(), "TestMain re-executed with it")
}
