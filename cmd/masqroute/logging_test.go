package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// jsonRecords parses every line of out as one JSON log record.
func jsonRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "line %q", sc.Text())
		recs = append(recs, rec)
	}
	require.NoError(t, sc.Err())
	return recs
}

func TestJSONLogsParse(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(&buf, "json", slog.LevelDebug)
	require.NoError(t, err)
	l = l.With("component", "proxy")
	l.Info("tunnel closed", "error", errors.Join(errors.New("first"), errors.New("second")), "note", "a\nb\r\n")
	l.Debug("plain", "n", 3)
	recs := jsonRecords(t, buf.String())
	require.Len(t, recs, 2)
	require.Equal(t, "tunnel closed", recs[0]["msg"])
	require.Equal(t, "INFO", recs[0]["level"])
	require.Equal(t, "proxy", recs[0]["component"])
	require.Equal(t, "first; second", recs[0]["error"], "multi-line values are folded onto one line")
	require.Equal(t, "a; b", recs[0]["note"])
	require.Equal(t, 3.0, recs[1]["n"])

	buf.Reset()
	l, err = newLogger(&buf, "text", slog.LevelInfo)
	require.NoError(t, err)
	l.Error("failed", "component", "tls", "error", errors.Join(errors.New("x"), errors.New("y")))
	require.Equal(t, 1, strings.Count(buf.String(), "\n"))
	require.Contains(t, buf.String(), `msg=failed component=tls error="x; y"`)

	_, err = newLogger(&buf, "yaml", slog.LevelInfo)
	require.Error(t, err)
}

// TestDaemonJSONLogs: with -log-format json every line the daemon writes
// from start to stop is a JSON record with a component.
func TestDaemonJSONLogs(t *testing.T) {
	d := startDaemon(t, "-self-signed", "-log-format", "json", "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
		"-pprof", "", "-gops=false")
	d.stop(t)
	recs := jsonRecords(t, d.stderr.String())
	var msgs []string
	for _, rec := range recs {
		require.NotEmpty(t, rec["component"], "record without a component: %v", rec)
		msgs = append(msgs, rec["component"].(string)+": "+rec["msg"].(string))
	}
	require.Contains(t, msgs, "daemon: started")
	require.Contains(t, msgs, "daemon: stopped")
	require.Contains(t, msgs, "tls: self-signed certificate made; clients trust its CA with -ca")
}

// TestStdLogAtDebug: what libraries print through the standard log
// package (connect-ip-go's "handling stream failed: H3_NO_ERROR") is a
// debug record, so it does not reach stderr at the default levels.
func TestStdLogAtDebug(t *testing.T) {
	w, flags, prefix := log.Writer(), log.Flags(), log.Prefix()
	t.Cleanup(func() { log.SetOutput(w); log.SetFlags(flags); log.SetPrefix(prefix) })

	var stderr bytes.Buffer
	l, err := newLogger(&stderr, "text", slog.LevelInfo)
	require.NoError(t, err)
	routeStdLog(l)
	log.Printf("handling stream failed: %v", "H3_NO_ERROR")
	require.Empty(t, stderr.String())

	l, err = newLogger(&stderr, "text", slog.LevelDebug)
	require.NoError(t, err)
	routeStdLog(l)
	log.Printf("handling stream failed: %v", "H3_NO_ERROR")
	require.Contains(t, stderr.String(), `level=DEBUG msg="handling stream failed: H3_NO_ERROR" component=stdlog`)
	require.Equal(t, 1, strings.Count(stderr.String(), "\n"))

	// The client sets it up before connect-ip-go runs: nothing on stderr.
	stderr.Reset()
	err = run(context.Background(), []string{"client", "-ip", "-insecure", "-proxy", "127.0.0.1:1", "-target", "192.0.2.1",
		"-timeout", "50ms"}, &bytes.Buffer{}, &stderr)
	require.Error(t, err)
	log.Print("late message from a library goroutine")
	time.Sleep(10 * time.Millisecond)
	require.Empty(t, stderr.String())
}
