package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeFile writes text to a new file in t's temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// TestConfigFile: the file sets what the flags set, lists join with commas,
// and a flag on the command line wins over the file.
func TestConfigFile(t *testing.T) {
	path := writeFile(t, "masqroute.toml", `
# a comment
self-signed = true
listen = "127.0.0.1:5555"
workers = 3
idle-timeout = "90s"
new-conns-per-addr = 12.5
allow = ["10.1.0.0/16", "192.0.2.7"]
deny-ports = [25, "6000-6100"]
memory-limit = "256MiB"
log-level = "debug"
`)
	c, err := parseServeFlags([]string{"-config", path, "-workers", "5"}, io.Discard)
	require.NoError(t, err)
	require.True(t, c.selfSigned)
	require.Equal(t, "127.0.0.1:5555", c.listen)
	require.Equal(t, 5, c.workers, "the command line wins")
	require.Equal(t, 90*time.Second, c.idleTimeout)
	require.Equal(t, 12.5, c.newConnsPerAddr)
	require.Equal(t, "10.1.0.0/16,192.0.2.7", c.allow)
	require.Equal(t, "25,6000-6100", c.denyPorts)
	require.Equal(t, int64(256<<20), c.gc.memLimit)
	require.Equal(t, "DEBUG", c.logLevel.String())
	// The file's values go through the same checks as the flags'.
	pol, err := c.targetPolicy()
	require.NoError(t, err)
	require.NotNil(t, pol)
}

// TestConfigFileErrors: every mistake in the file is one line naming the
// file and the key (or line), with exit status 2.
func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key", "self-signed = true\nlisten-addr = \"x\"\n", "listen-addr: no such setting"},
		{"command-line only", "self-signed = true\nconfig = \"other.toml\"\n", "config: no such setting"},
		{"bad value", "self-signed = true\nworkers = \"many\"\n", "workers: invalid value"},
		{"table", "self-signed = true\n[rate]\nburst = \"1s\"\n", "rate: tables are not settings"},
		{"syntax", "self-signed = true\nlisten = \n", "line 2"},
		{"checked", "self-signed = true\nring-size = 0\n", "-ring-size and -pending-buffer must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "bad.toml", tc.text)
			var out, errOut, report bytes.Buffer
			err := run(context.Background(), []string{"-config", path}, &out, &errOut)
			require.Equal(t, 2, exitCode(err, &report), "%v", err)
			require.Empty(t, out.String()+errOut.String())
			first, _, _ := strings.Cut(report.String(), "\n")
			require.Contains(t, first, tc.want)
			require.Equal(t, 2, strings.Count(report.String(), "\n"), "one line and the hint:\n%s", report.String())
		})
	}
	var report bytes.Buffer
	err := run(context.Background(), []string{"-config", filepath.Join(t.TempDir(), "missing.toml")}, io.Discard, io.Discard)
	require.Equal(t, 2, exitCode(err, &report))
	require.Contains(t, report.String(), "missing.toml")
}

// TestPrintConfig: -print-config prints the effective configuration (what
// -dev implies included) and exits; read back with -config it gives the
// same configuration again.
func TestPrintConfig(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-dev", "-workers", "3", "-allow", "10.0.0.0/8", "-print-config"}, &out, io.Discard))
	printed := out.String()
	for _, want := range []string{
		"workers = 3\n",
		"allow = \"10.0.0.0/8\"\n",
		"dev = true\n",
		"self-signed = true\n", // implied by -dev
		"ip = \"netstack\"\n",  // implied by -dev
		"gops = true\n",        // on with -dev
		"idle-timeout = \"2m0s\"\n",
		"memory-limit = \"off\"\n",
	} {
		require.Contains(t, printed, want)
	}
	require.NotContains(t, printed, "print-config =")
	require.NotContains(t, printed, "version =")

	path := writeFile(t, "printed.toml", printed)
	var again bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-config", path, "-print-config"}, &again, io.Discard))
	require.Equal(t, printed, again.String())
}

// TestConfigFileStartsDaemon: a daemon started from a file alone serves
// as the file says.
func TestConfigFileStartsDaemon(t *testing.T) {
	path := writeFile(t, "masqroute.toml", `
self-signed = true
listen = "127.0.0.1:0"
metrics = ""
pprof = ""
log-format = "json"
workers = 2
`)
	d := startDaemon(t, "-config", path)
	require.Contains(t, d.stderr.String(), startedJSON)
	require.Contains(t, d.stderr.String(), `"workers":2`)
	d.stop(t)
}
