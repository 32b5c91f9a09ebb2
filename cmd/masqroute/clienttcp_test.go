package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClientTCPFromBanner runs the banner's CONNECT (TCP) command: the
// metrics page, fetched through a TCP tunnel with stdin as the request.
func TestClientTCPFromBanner(t *testing.T) {
	d := startDaemon(t, "-dev", "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-pprof", "", "-gops=false")
	line := bannerLine(t, d.stdout.String(), " client -proxy ")
	if !strings.Contains(line, "-tcp") {
		line = bannerLine(t, d.stdout.String(), " -tcp ")
	}
	// printf '...' | masqroute client ARGS | grep ...: keep ARGS.
	_, rest, ok := strings.Cut(line, "| ")
	require.True(t, ok, line)
	rest, _, _ = strings.Cut(rest, " |")
	cmd := strings.Fields(rest)
	args := cmd[slices.Index(cmd, "client"):]
	require.Contains(t, args, "-tcp")

	old := clientStdin
	clientStdin = strings.NewReader("GET /metrics HTTP/1.0\r\n\r\n")
	t.Cleanup(func() { clientStdin = old })
	var out, errOut syncBuffer
	err := run(context.Background(), args, &out, &errOut)
	require.NoError(t, err, errOut.String())
	require.Regexp(t, regexp.MustCompile(`^HTTP/1\.0 200 OK`), out.String())
	require.Contains(t, out.String(), "masqroute_tcp_tunnels_active 1")
}
