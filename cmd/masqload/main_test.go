package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/metrics"
	"github.com/masqroute/masqroute/engine/proxy"
)

// TestMain re-executes the test binary with GODEBUG=http2xconnect=1, which
// the proxy's HTTP/2 carrier needs from the start (TestCarriers).
func TestMain(m *testing.M) {
	if err := proxy.ReexecWithExtendedConnect(); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, false)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},                // no proxy
		{"-proxy", "x:1"}, // no target
		{"-proxy", "x:1", "-target", "y:2", "-echo"},
		{"-proxy", "x:1", "-echo", "-tunnels", "0"},
		{"-proxy", "x:1", "-echo", "-size", "10"},
		{"-proxy", "x:1", "-echo", "-rate", "-5"},
		{"-proxy", "x:1", "-echo", "-duration", "0"},
		{"-proxy", "x:1", "-echo", "-ca", "f", "-insecure"},
		{"-proxy", "x:1", "-transport", "rawquic", "-echo"},
		{"-proxy", "x:1", "-transport", "tcp", "-echo"},
		{"-local", "nginx"},
		{"-local", "masqroute", "-proxy", "x:1"},
		{"-bogus"},
		{"-local", "masqroute", "extra"},
		{"-proxy", "x:1", "-echo", "-local-transports", "2"},
		{"-local", "masqroute", "-local-transports", "-1"},
		{"-proxy", "x:1", "-echo", "-carrier", "h4"},
		{"-local", "masqroute", "-carrier", "h2"},
	} {
		code, _, stderr := runCmd(t, args...)
		require.Equal(t, 2, code, "%q: %s", args, stderr)
		require.NotEmpty(t, stderr)
	}
	code, _, stderr := runCmd(t, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, stderr, "-tunnels")
}

func TestLocalJSON(t *testing.T) {
	code, stdout, stderr := runCmd(t, "-local", "masqroute", "-tunnels", "3", "-conns", "2",
		"-duration", "300ms", "-warmup", "50ms", "-drain", "200ms", "-json")
	require.Equal(t, 0, code, stderr)
	var res loadgen.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.Equal(t, "masqroute", res.Transport)
	require.Equal(t, 3, res.Tunnels)
	require.Equal(t, 2, res.Conns)
	require.Positive(t, res.Received)
	require.Positive(t, res.Latency.P50)
	require.Equal(t, 1, strings.Count(stdout, "\n"), "one JSON object, one line")
	require.NotNil(t, res.DataPath, "the in-process proxy's data-path counts")
	for _, h := range res.Hops { // the path starts and ends with the summary's counts
		switch h.Stage {
		case loadgen.StageSent:
			require.Equal(t, res.Sent, h.Count)
		case loadgen.StageReceived:
			require.Equal(t, res.Received, h.Count)
		}
	}
	require.Positive(t, res.DataPath.Datagrams)
}

// -local-transports: the report gives each transport's share of the QUIC
// packets, and no packet reached a transport without its connection.
func TestLocalTransports(t *testing.T) {
	code, stdout, stderr := runCmd(t, "-local", "masqroute", "-local-transports", "2", "-tunnels", "16", "-conns", "16",
		"-duration", "300ms", "-warmup", "50ms", "-drain", "200ms")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `transports +0: \d+\.\d %, 1: \d+\.\d % of QUIC packets in`, stdout)
	require.NotContains(t, stdout, "quic.transport_stray", "drops are listed only where not zero")
}

func TestLocalTextOpenLoop(t *testing.T) {
	code, stdout, stderr := runCmd(t, "-local", "baseline", "-rate", "2000", "-tunnels", "4",
		"-duration", "300ms", "-warmup", "50ms", "-drain", "200ms")
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"open loop, 2,000 dgrams/s offered", "received", "latency", "send lag", "baseline: to target"} {
		require.Contains(t, stdout, want)
	}
}

// An external proxy: -proxy, -ca, -echo and -metrics together.
func TestProxyWithMetrics(t *testing.T) {
	env, err := e2e.Start(e2e.Masqroute)
	require.NoError(t, err)
	defer env.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(env.Proxy))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	cert, err := e2e.Cert()
	require.NoError(t, err)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, cert.PEM, 0o600))
	proxy := env.Transport.(*loadgen.MASQUE).Proxy

	code, stdout, stderr := runCmd(t, "-proxy", proxy, "-ca", ca, "-echo", "-metrics", srv.URL,
		"-tunnels", "2", "-duration", "300ms", "-warmup", "50ms", "-drain", "200ms", "-json")
	require.Equal(t, 0, code, stderr)
	var res loadgen.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.Positive(t, res.Received)
	names := map[string]uint64{}
	for _, h := range res.Hops {
		names[h.Name] = h.Count
	}
	require.Positive(t, names["proxy: to target"], "hops: %+v", res.Hops)
	require.Positive(t, names["echo: received"])
	require.Positive(t, names["client: router delivered"])

	// The data-path counts, scraped from /metrics, per datagram.
	dp := res.DataPath
	require.NotNil(t, dp, "data path from the proxy's masqroute_datapath_* series")
	require.Equal(t, names["proxy: router dispatched"], dp.Datagrams)
	require.Contains(t, dp.WakesBy, "worker")
	require.Contains(t, dp.Counts, "batched_datagrams.worker")
	require.Positive(t, dp.Counts["batched_datagrams.worker"])
	require.GreaterOrEqual(t, dp.Batch["worker"], 1.0)
	if runtime.GOOS == "linux" {
		require.Positive(t, dp.SyscallsToTargetPerDgram)
		require.Positive(t, dp.SyscallsFromTargetPerDgram)
		require.GreaterOrEqual(t, dp.Batch["to_target"], 1.0)
		require.GreaterOrEqual(t, dp.Batch["from_target"], 1.0)
	}

	// And in the summary for people.
	code, stdout, stderr = runCmd(t, "-proxy", proxy, "-ca", ca, "-echo", "-metrics", srv.URL,
		"-tunnels", "2", "-duration", "200ms", "-warmup", "50ms", "-drain", "200ms")
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"data path (per datagram from clients", "wakes/dgram", "syscalls to targets", "syscalls from targets"} {
		require.Contains(t, stdout, want)
	}
}

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := &progressLine{w: &b}
	p.update(loadgen.Progress{Phase: "warmup", Elapsed: -700 * time.Millisecond, Duration: 10 * time.Second, Sent: 5})
	p.update(loadgen.Progress{Phase: "measure", Elapsed: 3 * time.Second, Duration: 10 * time.Second, Sent: 1000, Received: 990, SentRate: 500, RecvRate: 495})
	p.update(loadgen.Progress{Phase: "drain", Elapsed: 10500 * time.Millisecond, Duration: 10 * time.Second, Drain: time.Second, Sent: 5000, Received: 4990})
	p.clear()
	out := b.String()
	require.Contains(t, out, "\r\x1b[K[measure   3.0s/10s] sent 1000 (500/s)  received 990 (495/s)")
	require.Contains(t, out, "[warm-up  0.7s left] sending 0/s, receiving 0/s (not counted)")
	require.NotContains(t, out, "sent 5 ", "warm-up sends are not counted")
	require.Contains(t, out, "[drain    0.5s/1.0s] sent 5000, received 4990 so far: waiting for the last replies")
	require.True(t, strings.HasSuffix(out, "\r\x1b[K"))
	var nilLine *progressLine
	nilLine.clear()
}

// -carrier h2 and h1 carry the load over TCP, to the same proxy.
func TestCarriers(t *testing.T) {
	env, err := e2e.Start(e2e.Masqroute)
	require.NoError(t, err)
	defer env.Close()
	cert, err := e2e.Cert()
	require.NoError(t, err)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, cert.PEM, 0o600))
	addr := env.Transport.(*loadgen.MASQUE).Proxy
	ln, err := net.Listen("tcp", addr) // the same port number, on TCP
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- env.Proxy.ServeTCP(ln, cert.ServerTLS(), proxy.TCPOptions{H2: true, H1: true}) }()
	defer func() { ln.Close(); <-served }()

	for _, carrier := range []string{"h2", "h1"} {
		code, stdout, stderr := runCmd(t, "-proxy", addr, "-ca", ca, "-echo", "-carrier", carrier,
			"-tunnels", "2", "-duration", "300ms", "-warmup", "50ms", "-drain", "200ms", "-json")
		require.Equal(t, 0, code, stderr)
		var res loadgen.Result
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		require.Positive(t, res.Received, carrier)
	}
	st := env.Proxy.Stats()
	require.Positive(t, st.CapsuleDatagrams, "the load went in capsules")
}
