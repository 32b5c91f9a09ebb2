package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDevDirKeepsCA is `make run` twice: the CA in -dev-dir is made once,
// with its key readable by its owner only, and the client command the
// first banner printed still trusts the proxy after a restart.
func TestDevDirKeepsCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".dev")
	caFile := filepath.Join(dir, caCertFileName)
	args := []string{"-dev", "-dev-dir", dir, "-listen", "127.0.0.1:0", "-metrics", "", "-pprof", "", "-gops=false"}

	d := startDaemon(t, args...)
	require.Contains(t, bannerLine(t, d.stdout.String(), "CA file"), caFile+"  (clients trust it with -ca; kept for the next start)")
	require.Contains(t, d.stderr.String(), "made a CA and kept it")
	firstCmd := strings.Fields(bannerLine(t, d.stdout.String(), " client -proxy "))
	firstPEM, err := os.ReadFile(caFile)
	require.NoError(t, err)
	for path, perm := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, caKeyFileName): 0o600, caFile: 0o600} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, perm, fi.Mode(), path)
	}
	d.stop(t)
	_, err = os.Stat(caFile)
	require.NoError(t, err, "the kept CA is not removed on exit")

	d = startDaemon(t, args...)
	require.NotContains(t, d.stderr.String(), "made a CA")
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	require.Equal(t, string(firstPEM), string(pem))

	// The first run's -ca argument, against the second run's proxy and echo.
	cmd := strings.Fields(bannerLine(t, d.stdout.String(), " client -proxy "))
	require.Equal(t, firstCmd[slices.Index(firstCmd, "-ca")+1], cmd[slices.Index(cmd, "-ca")+1])
	cmd = append(cmd[slices.Index(cmd, "client"):], "-count", "1")
	var out syncBuffer
	require.NoError(t, run(context.Background(), cmd, &out, io.Discard), "%s", out.String())
	require.Contains(t, out.String(), "1 sent, 1 received")
}

func TestDevDirRefusesBrokenCA(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, caCertFileName), []byte("junk"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, caKeyFileName), []byte("junk"), 0o600))
	_, _, err := loadOrMakeCA(dir)
	require.ErrorContains(t, err, "to make a new CA")
	junk, err := os.ReadFile(filepath.Join(dir, caCertFileName))
	require.NoError(t, err)
	require.Equal(t, "junk", string(junk), "not overwritten")

	for _, args := range [][]string{
		{"-dev-dir", dir},
		{"-dev", "-dev-dir", dir, "-write-ca", "x.pem"},
		{"-cert", "c.pem", "-key", "k.pem", "-self-signed"},
	} {
		_, err := parseServeFlags(args, io.Discard)
		_, isUsage := errors.AsType[*usageError](err)
		require.True(t, isUsage, "%v: %v", args, err)
	}
}
