// Command masqroute is a MASQUE proxy: it serves CONNECT-UDP tunnels
// (RFC 9298) and, with -ip, CONNECT-IP tunnels (RFC 9484) over HTTP/3, with
// every HTTP datagram routed by the masqroute engine.
//
// Usage:
//
//	masqroute -cert FILE -key FILE [flags]   run the proxy
//	masqroute -self-signed [flags]           run it with a certificate it makes
//	masqroute -dev [flags]                   run it for a first try on this machine
//	masqroute client [flags]                 send datagrams to a UDP echo target through a proxy
//	masqroute token -token-file FILE         make a bearer token; print its -auth-tokens line
//	masqroute version                        print the version (also -version)
//
// The quickest start is `make run` (masqroute -dev -dev-dir .dev): it serves
// on 127.0.0.1:4433 with a certificate signed by a CA kept in .dev/, allows
// tunnels to loopback targets, starts a UDP echo target, and prints the
// client command that sends traffic through the proxy, e.g.
//
//	./bin/masqroute client -proxy 127.0.0.1:4433 -ca /path/to/checkout/.dev/ca.pem -target 127.0.0.1:40000 -count 5
//
// The proxy needs -cert and -key, or -self-signed (implied by -dev): then it
// makes a CA, signs a certificate for its listen host and localhost, and
// writes the CA in PEM to -write-ca, to a temporary file, or, with -dev-dir,
// keeps it there for the next start. SIGHUP reads -cert and -key again;
// connections already open keep their certificate. By default tunnels may
// reach public addresses only (see engine/policy): -allow, -deny,
// -allow-ports and -deny-ports adjust that.
//
// -config FILE reads the same settings from a TOML file, one key per flag
// (config.go); -print-config prints the effective configuration in that
// format. The file is read at start only, not on SIGHUP.
//
// With -h2 and -h1 (both on with -dev) the daemon also serves the tunnels
// over HTTP/2 (extended CONNECT, RFC 8441) and HTTP/1.1 (Upgrade, RFC 9298
// §3.2) on TCP, on -listen's port number, for clients whose UDP is blocked
// (client -carrier h2|h1|auto). Serving HTTP/2, it restarts itself once at
// start with GODEBUG=http2xconnect=1, which Go's HTTP/2 server needs for
// extended CONNECT; the PID stays the same.
//
// Logs go to stderr, -log-format text or json, one record a line, with the
// part of the daemon that speaks in a component attribute. What libraries
// print through the standard log package comes out at debug level.
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
	reexecForH2(os.Args[1:]) // listen_tcp.go; on failure HTTP/2 tunnels are refused, said in the log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// A usageError is a mistake in the command line: exitCode prints it on one
// line with a hint where the usage is, and exits 2. The whole usage text
// is for -help; after a typo it would bury the one line that matters.
type usageError struct {
	cmd string // "masqroute" or "masqroute client"
	msg string
}

func (e *usageError) Error() string { return e.msg }

func badUsage(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// run runs the command line args (without the program name) until ctx is
// done or the command ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "client":
			return runClient(ctx, args[1:], stdout, stderr)
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "version":
			if len(args) > 1 {
				return badUsage("masqroute", "version takes no arguments")
			}
			fmt.Fprintln(stdout, buildVersion())
			return nil
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
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(stderr, "%s: %s\nRun '%s -help' for usage.\n", ue.cmd, ue.msg, ue.cmd)
		return 2
	}
	fmt.Fprintln(stderr, "masqroute:", err)
	return 1
}

// parseFlags parses args into fs. -help prints the usage to stderr; any
// other mistake comes back as a usageError, without the usage.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard) // flag would print the error and the whole usage
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return &usageError{cmd: fs.Name(), msg: err.Error()}
	case fs.NArg() > 0:
		return badUsage(fs.Name(), "unexpected argument %q", fs.Arg(0))
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
  masqroute -cert FILE -key FILE [flags]   run the proxy (SIGHUP reloads the certificate)
  masqroute -self-signed [flags]           run it with a CA and certificate it makes;
                                           clients trust the CA with -ca
  masqroute -dev [flags]                   run it for a first try: self-signed, loopback
                                           targets allowed, a local UDP echo target,
                                           CONNECT-IP into a userspace network
  masqroute client [flags]                 send datagrams to a UDP echo target through
                                           a proxy (-ip: ping through a CONNECT-IP tunnel)
  masqroute token -token-file FILE         make a bearer token for a client; prints the hash
                                           line for the proxy's -auth-tokens file
  masqroute version                        print version, commit and Go version

Run "masqroute -help" or "masqroute client -help" for the flags.
`
