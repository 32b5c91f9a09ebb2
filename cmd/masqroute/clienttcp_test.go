package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClientTCPFromBanner runs the banner's CONNECT (TCP) commands, over
// HTTP/3 and over HTTP/2: the metrics page, fetched through a TCP tunnel
// with stdin as the request.
func TestClientTCPFromBanner(t *testing.T) {
	d := startDaemon(t, "-dev", "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-pprof", "", "-gops=false")
	var lines []string
	for line := range strings.Lines(d.stdout.String()) {
		if strings.Contains(line, " -tcp ") {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	require.Len(t, lines, 2, "an HTTP/3 and an HTTP/2 command:\n%s", d.stdout.String())
	require.NotContains(t, lines[0], "-carrier")
	require.Contains(t, lines[1], "-carrier h2")
	for _, line := range lines {
		// printf '...' | masqroute client ARGS | grep ...: keep ARGS.
		_, rest, ok := strings.Cut(line, "| ")
		require.True(t, ok, line)
		rest, _, _ = strings.Cut(rest, " |")
		cmd := strings.Fields(rest)
		args := cmd[slices.Index(cmd, "client"):]
		require.Contains(t, args, "-tcp")

		old := clientStdin
		clientStdin = strings.NewReader("GET /metrics HTTP/1.0\r\n\r\n")
		var out, errOut syncBuffer
		err := run(context.Background(), args, &out, &errOut)
		clientStdin = old
		require.NoError(t, err, errOut.String())
		require.Regexp(t, regexp.MustCompile(`^HTTP/1\.0 200 OK`), out.String())
		require.Contains(t, out.String(), "masqroute_tcp_tunnels_active 1", line)
	}
}

// TestClientTCPNotOverH1: -tcp with -carrier h1 is a usage error.
func TestClientTCPNotOverH1(t *testing.T) {
	var out, errOut syncBuffer
	err := run(context.Background(), []string{"client", "-proxy", "127.0.0.1:1", "-insecure", "-carrier", "h1", "-tcp", "127.0.0.1:80"}, &out, &errOut)
	require.Error(t, err)
	require.Contains(t, err.Error()+errOut.String(), "-tcp runs on h3, h2 or auto")
}
