// Command masqroute is a MASQUE proxy: it serves CONNECT-UDP tunnels
// (RFC 9298) over HTTP/3, with every HTTP datagram routed by the masqroute
// engine.
//
// Usage:
//
//	masqroute [flags]          run the proxy
//	masqroute -dev [flags]     run it for a first try on this machine
//	masqroute client [flags]   send datagrams to a UDP echo target through a proxy
//
// The quickest start is `make run` (masqroute -dev): it serves on
// 127.0.0.1:4433 with a fresh self-signed certificate, allows tunnels to
// loopback targets, starts a UDP echo target, and prints the client command
// that sends traffic through the proxy, e.g.
//
//	./bin/masqroute client -proxy 127.0.0.1:4433 -ca /tmp/masqroute-ca-123.pem -target 127.0.0.1:40000 -count 5
//
// Without -cert and -key the proxy makes a self-signed certificate for its
// listen host and localhost and writes it, in PEM, to the -write-ca file
// for clients to trust. By default tunnels may reach public addresses only
// (see engine/policy): -allow, -deny, -allow-ports and -deny-ports adjust
// that.
//
// Observability, on loopback by default: Prometheus metrics on
// http://127.0.0.1:9464/metrics (names in engine/metrics), net/http/pprof on
// http://127.0.0.1:6060/debug/pprof/, and a gops agent (gops stack|stats|trace
// PID). SIGINT or SIGTERM drains the proxy (GOAWAY, existing tunnels may end
// within -shutdown-timeout) and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// A usageError is a mistake in the command line (exit status 2). An empty
// one has been reported already, with the usage text.
type usageError string

func (e usageError) Error() string {
	if e == "" {
		return "usage error"
	}
	return string(e)
}

// run runs the command line args (without the program name) until ctx is
// done or the command ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "client":
			return runClient(ctx, args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stdout, usageText)
			return nil
		}
	}
	return runServe(ctx, args, stdout, stderr)
}

// exitCode reports err on stderr and returns the process's exit status.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	code := 1
	if ue, ok := errors.AsType[usageError](err); ok {
		if ue == "" {
			return 2
		}
		code = 2
	}
	fmt.Fprintln(stderr, "masqroute:", err)
	return code
}

// parseFlags parses args into fs, which prints its errors and usage to
// stderr.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("")
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return usageError("")
	}
	return nil
}

// commandName is how a user runs this program again: "go run
// ./cmd/masqroute" when it was started by go run (its binary is in the
// build cache), else the path it was started as.
func commandName() string {
	exe := os.Args[0]
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/masqroute"
	}
	return exe
}

const usageText = `masqroute is a MASQUE proxy over HTTP/3: CONNECT-UDP (RFC 9298) and,
with -ip, CONNECT-IP (RFC 9484).

Usage:
  masqroute [flags]          run the proxy
  masqroute -dev [flags]     run it for a first try: self-signed certificate,
                             loopback targets allowed, a local UDP echo target
  masqroute client [flags]   send datagrams to a UDP echo target through a proxy
                             (-ip: ping through a CONNECT-IP tunnel)

Run "masqroute -h" or "masqroute client -h" for the flags.
`
