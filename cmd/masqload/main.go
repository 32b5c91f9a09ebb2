// Command masqload is a load generator for MASQUE CONNECT-UDP proxies: it
// opens tunnels through a proxy to a UDP echo target, sends datagrams that
// carry a sequence number and a send time, and reports what came back.
//
// The load engine is package bench/e2e/loadgen; this command is a thin
// command line over it. See `masqload -h`.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stdout))
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run is masqload with its arguments and outputs; it returns the exit
// status. A live progress line goes to stdout when tty is set and the
// output is not JSON.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "masqload:", err)
		return 2
	}
	cfg := c.loadConfig()
	var prog *progressLine
	if tty && !c.json {
		prog = &progressLine{w: stdout}
		cfg.Progress = prog.update
	}
	res, err := c.drive(ctx, cfg)
	prog.clear()
	if err != nil {
		fmt.Fprintln(stderr, "masqload:", err)
		return 1
	}
	if c.json {
		err = json.NewEncoder(stdout).Encode(res)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "masqload:", err)
		return 1
	}
	return 0
}

// drive sets up what the flags ask for and runs the load.
func (c *config) drive(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
	if c.local != "" {
		impl, _ := e2e.ParseImpl(c.local) // checked by parseFlags
		env, err := e2e.StartWith(impl, e2e.ServerConfig{Transports: c.localTrs, Affinity: c.localAff && c.localTrs > 0})
		if err != nil {
			return loadgen.Result{}, err
		}
		defer env.Close()
		return env.Run(ctx, cfg)
	}
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return loadgen.Result{}, err
	}
	if c.transport == "rawquic" {
		cfg.Transport = &loadgen.RawQUIC{Addr: c.proxy, TLS: tlsConf, QUIC: e2e.QUICConfig()}
		return loadgen.Run(ctx, cfg)
	}
	m := &loadgen.MASQUE{Proxy: c.proxy, TLS: tlsConf, QUIC: e2e.QUICConfig(), Template: c.template, Carrier: c.carrier}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return loadgen.Result{}, fmt.Errorf("-token-file: %w", err)
		}
		m.Header = http.Header{"Proxy-Authorization": {"Bearer " + strings.TrimSpace(string(b))}}
	}
	cfg.Transport = m
	cfg.Target = c.target
	if c.echo {
		es, err := echo.Listen("127.0.0.1:0")
		if err != nil {
			return loadgen.Result{}, err
		}
		defer es.Close()
		cfg.Target = es.Addr().String()
		cfg.Probes = append(cfg.Probes, loadgen.EchoProbe(es))
	}
	if c.metrics != "" {
		cfg.Probes = append(cfg.Probes, loadgen.PrometheusProbe(c.metrics, nil))
	}
	return loadgen.Run(ctx, cfg)
}

func (c *config) tlsConfig() (*tls.Config, error) {
	switch {
	case c.ca != "":
		return devcert.TrustPEMFile(c.ca)
	case c.insecure:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, nil //nolint:gosec // asked for with -insecure
	default:
		return &tls.Config{MinVersion: tls.VersionTLS13}, nil
	}
}
