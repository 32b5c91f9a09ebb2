package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

// startedRecord is the daemon's "started" record in JSON format.
func startedRecord(t *testing.T, d *runningDaemon) map[string]any {
	t.Helper()
	for _, rec := range jsonRecords(t, d.stderr.String()) {
		if rec["msg"] == "started" && rec["component"] == "daemon" {
			return rec
		}
	}
	t.Fatalf("no started record in:\n%s", d.stderr.String())
	return nil
}

// waitRecord waits for a JSON record with msg and component=tunnel.
func waitRecord(t *testing.T, d *runningDaemon, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, rec := range jsonRecords(t, d.stderr.String()) {
			if rec["msg"] == msg && rec["component"] == "tunnel" {
				return rec
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q record in:\n%s", msg, d.stderr.String())
	return nil
}

// TestObservability runs the daemon with -debug-listen, -qlog and JSON
// logs, and checks what an operator looks at: the live tunnel on
// /debug/tunnels, the one-line records of a tunnel that ended and of a
// refusal, the build info and setup histogram on /metrics (on both
// listeners), pprof on the debug listener, the profile rates, and the
// qlog files.
func TestObservability(t *testing.T) {
	t.Cleanup(func() { runtime.SetBlockProfileRate(0); runtime.SetMutexProfileFraction(0) })
	es, err := echo.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer es.Close()
	dir := t.TempDir()
	caFile, qlogDir := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "qlog")
	d := startDaemon(t, "-self-signed", "-write-ca", caFile, "-listen", "127.0.0.1:0", "-log-format", "json",
		"-metrics", "127.0.0.1:0", "-pprof", "", "-debug-listen", "127.0.0.1:0", "-qlog", qlogDir,
		"-block-profile-rate", "1000", "-mutex-profile-fraction", "10", "-allow", es.Addr().Addr().String())
	started := startedRecord(t, d)
	require.Equal(t, false, started["gops"], "no gops agent outside -dev unless asked")
	debugURL, metricsURL := started["debug"].(string), started["metrics"].(string)
	require.NotEmpty(t, debugURL)
	require.Equal(t, 10, runtime.SetMutexProfileFraction(-1))

	tlsConf, err := devcert.TrustPEMFile(caFile)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, started["listen"].(string), &client.Config{TLSConfig: tlsConf,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer conn.Close()
	u, err := conn.DialUDP(ctx, es.Addr().String())
	require.NoError(t, err)
	buf := make([]byte, 100)
	for i := 0; i < 3; {
		_, err := u.Write([]byte("hello"))
		require.NoError(t, err)
		require.NoError(t, u.SetReadDeadline(time.Now().Add(time.Second)))
		if n, err := u.Read(buf); err == nil && n == 5 {
			i++
		}
	}

	// The live tunnel, as a table and as JSON.
	code, body := get(t, debugURL+"debug/tunnels")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "1 live tunnels")
	require.Contains(t, body, es.Addr().String())
	require.Contains(t, body, "connect-udp")
	// The worker counts a batch after it is written, which can be after
	// its echo reached the client: read the page until the count lands.
	var live []proxy.TunnelInfo
	require.Eventually(t, func() bool {
		code, body = get(t, debugURL+"debug/tunnels?format=json")
		live = nil
		return code == http.StatusOK && json.Unmarshal([]byte(body), &live) == nil &&
			len(live) == 1 && live[0].ToTarget >= 3
	}, 5*time.Second, 5*time.Millisecond, "the tunnel list shows the tunnel and its three datagrams")
	require.Len(t, live, 1)
	require.Equal(t, es.Addr().String(), live[0].Target)
	require.GreaterOrEqual(t, live[0].ToTarget, uint64(3))

	// A tunnel that ends: one record with its counts.
	require.NoError(t, u.Close())
	rec := waitRecord(t, d, "tunnel ended")
	require.Equal(t, "INFO", rec["level"])
	require.Equal(t, "connect-udp", rec["kind"])
	require.Equal(t, es.Addr().String(), rec["target"])
	require.NotEmpty(t, rec["client"])
	require.NotEmpty(t, rec["duration"])
	require.NotEmpty(t, rec["reason"])
	require.GreaterOrEqual(t, rec["datagrams_to_target"], 3.0)
	require.Equal(t, 5*rec["datagrams_to_target"].(float64), rec["bytes_to_target"])
	require.GreaterOrEqual(t, rec["datagrams_to_client"], 3.0)
	require.Equal(t, 5*rec["datagrams_to_client"].(float64), rec["bytes_to_client"])
	require.Contains(t, rec, "dropped")

	// A refusal: one record with status, reason and client.
	_, err = conn.DialUDP(ctx, "127.0.0.2:9")
	require.Error(t, err)
	rec = waitRecord(t, d, "tunnel refused")
	require.Equal(t, 403.0, rec["status"])
	require.NotEmpty(t, rec["reason"])
	require.NotEmpty(t, rec["client"])
	require.Equal(t, "connect-udp", rec["kind"])

	// Metrics, on the debug listener and on -metrics alike.
	for _, url := range []string{debugURL + "metrics", metricsURL} {
		code, body = get(t, url)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, 1.0, metricValue(t, body, `masqroute_tunnels_opened_total{kind="connect-udp"}`))
		require.Equal(t, 1.0, metricValue(t, body, `masqroute_tunnel_setup_duration_seconds_count{kind="connect-udp",result="opened"}`))
		require.Equal(t, 1.0, metricValue(t, body, `masqroute_tunnels_rejected_total{reason="policy",status="403"}`))
		require.Regexp(t, `(?m)^masqroute_build_info\{commit="[^"]+",goversion="go[^"]+",version="[^"]+"\} 1$`, body)
	}
	code, body = get(t, debugURL+"debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, _ = get(t, debugURL+"debug/pprof/block?debug=1")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, conn.Close())
	d.stop(t)
	for _, rec := range jsonRecords(t, d.stderr.String()) {
		for k, v := range rec {
			if s, ok := v.(string); ok {
				require.NotContains(t, s, "\n", "multi-line value in %s", k)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(qlogDir, "*_server.sqlog"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no qlog file")
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.Contains(t, string(b), "qlog")
}

// TestTunnelLogRateLimit: past the bucket, lines are dropped and counted,
// and the next line that gets through says how many.
func TestTunnelLogRateLimit(t *testing.T) {
	var out bytes.Buffer
	l, err := newLogger(&out, "json", slog.LevelInfo)
	require.NoError(t, err)
	tl := newTunnelLog(l, 2)
	now := time.Unix(1000, 0)
	tl.now = func() time.Time { return now }
	for range 5 {
		tl.refused(proxy.Refusal{Status: 403, Reason: "destination_ip_prohibited", Client: "192.0.2.7:1234"})
	}
	require.Equal(t, 2, strings.Count(out.String(), "\n"), "a burst of 2")
	now = now.Add(time.Second) // two tokens back
	tl.ended(proxy.TunnelInfo{Kind: "connect-udp", Target: "192.0.2.1:53", Duration: 1500 * time.Millisecond,
		ToTarget: 2, ToTargetBytes: 20, ToClient: 1, ToClientBytes: 10, Dropped: 1, CloseReason: "closed"})
	recs := jsonRecords(t, out.String())
	require.Len(t, recs, 3)
	require.Equal(t, "tunnel refused", recs[0]["msg"])
	require.Equal(t, "destination_ip_prohibited", recs[0]["reason"])
	require.Equal(t, "192.0.2.7:1234", recs[0]["client"])
	require.NotContains(t, recs[0], "suppressed")
	last := recs[2]
	require.Equal(t, "tunnel ended", last["msg"])
	require.Equal(t, 3.0, last["suppressed"])
	require.Equal(t, "1.5s", last["duration"])
	require.Equal(t, 20.0, last["bytes_to_target"])
	require.Equal(t, "closed", last["reason"])

	// Rate 0: no lines.
	out.Reset()
	tl = newTunnelLog(l, 0)
	tl.refused(proxy.Refusal{Status: 403})
	require.Empty(t, out.String())
}
