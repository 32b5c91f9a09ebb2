// Command e2eserve runs one of the end-to-end benchmark's servers on
// loopback in a process of its own, for cmd/masqload to drive from another:
// the proxy and the load generator then have a runtime each (scheduler, GC)
// and a CPU profile of this process is the server's alone.
//
//	e2eserve -impl baseline -ca /tmp/ca.pem -cpuprofile /tmp/baseline.prof
//	masqload -proxy ADDR -ca /tmp/ca.pem -target TARGET -tunnels 100
//
// It prints the addresses to use and serves until interrupted. The echo
// target runs in this process too, as in the benchmark.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/bench/e2e/loadgen"
)

func main() {
	impl := flag.String("impl", "masqroute", "server to run: masqroute, baseline or rawquic")
	ca := flag.String("ca", "", "write the server's certificate (PEM) to this `file` for clients to trust")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this `file` until interrupted")
	transports := flag.Int("transports", 0, "masqroute only: serve on this many SO_REUSEPORT sockets steered by connection ID (0: one, 4-byte IDs)")
	affinity := flag.Bool("affinity", true, "with -transports: transport i's tunnels on executor worker i, as the daemon places them (false: round-robin over the workers)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *impl, *ca, *cpuprofile, e2e.ServerConfig{Transports: *transports, Affinity: *affinity && *transports > 0}); err != nil {
		fmt.Fprintln(os.Stderr, "e2eserve:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, after printing the flags masqload needs to
// out.
func run(ctx context.Context, out io.Writer, implName, ca, cpuprofile string, sc e2e.ServerConfig) error {
	impl, err := e2e.ParseImpl(implName)
	if err != nil {
		return err
	}
	env, err := e2e.StartWith(impl, sc)
	if err != nil {
		return err
	}
	defer env.Close()
	cert, err := e2e.Cert()
	if err != nil {
		return err
	}
	if ca != "" {
		if err := os.WriteFile(ca, cert.PEM, 0o644); err != nil {
			return err
		}
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	switch t := env.Transport.(type) {
	case *loadgen.MASQUE:
		fmt.Fprintf(out, "%s: -proxy %s -target %s\n", impl, t.Proxy, env.Target)
	case *loadgen.RawQUIC:
		fmt.Fprintf(out, "%s: -transport rawquic -proxy %s\n", impl, t.Addr)
	}
	<-ctx.Done()
	return nil
}
