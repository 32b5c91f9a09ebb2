package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/masqroute/masqroute/bench/e2e"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeUntilDone(t *testing.T) {
	dir := t.TempDir()
	for impl, want := range map[string]string{
		"masqroute": "masqroute: -proxy 127.0.0.1:",
		"rawquic":   "rawquic: -transport rawquic -proxy 127.0.0.1:",
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // print the addresses, then stop at once
		var out bytes.Buffer
		ca := filepath.Join(dir, impl+".pem")
		prof := filepath.Join(dir, impl+".prof")
		require.NoError(t, run(ctx, &out, impl, ca, prof, e2e.ServerConfig{}))
		require.Contains(t, out.String(), want)
		pem, err := os.ReadFile(ca)
		require.NoError(t, err)
		require.Contains(t, string(pem), "BEGIN CERTIFICATE")
		st, err := os.Stat(prof)
		require.NoError(t, err)
		require.Positive(t, st.Size())
	}
	require.Error(t, run(context.Background(), &bytes.Buffer{}, "nginx", "", "", e2e.ServerConfig{}))
}
