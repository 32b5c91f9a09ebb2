package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/masqroute/masqroute/engine/proxy"
)

// The TCP carriers: with -h2 (HTTP/2, extended CONNECT) and -h1 (HTTP/1.1
// Upgrade) the daemon also serves on TCP, on the port number QUIC has, for
// clients whose UDP is blocked. Every response there carries Alt-Svc for
// HTTP/3 on the same port. -dev turns both on unless they are given.

// devCarriers turns -h2, -h1 and -connect-tcp on in -dev mode unless the
// command line set them (so -print-config shows what -dev serves).
func (c *serveConfig) devCarriers(fs *flag.FlagSet) {
	if !c.dev {
		return
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["h2"] {
		c.h2 = true
	}
	if !set["h1"] {
		c.h1 = true
	}
	if !set["connect-tcp"] {
		c.connectTCP = true
	}
}

// tcpCarriers is ServeTCP running on the daemon's TCP listener.
type tcpCarriers struct {
	ln     net.Listener
	served chan error
}

// listenTCP serves the TCP carriers, if asked for, on a TCP listener with
// -listen's address and the port QUIC got (SO_REUSEPORT, as QUIC's socket
// may be one of several on the port).
func (d *daemon) listenTCP(tlsConf *tls.Config) error {
	if !d.cfg.h2 && !d.cfg.h1 {
		return nil
	}
	if d.cfg.h2 && !proxy.ExtendedConnectEnabled() {
		d.log.Warn("HTTP/2 tunnels need GODEBUG=" + proxy.ExtendedConnectEnv + " at start: every extended CONNECT will be refused")
	}
	udp := d.ln.Addr().(*net.UDPAddr)
	addr := net.JoinHostPort(udp.IP.String(), fmt.Sprint(udp.Port))
	if d.cfg.scale.reuseportGroup == "" {
		// SO_REUSEPORT would let this daemon join another process's
		// listener on the port (same user) and take a share of its
		// clients; a plain listen still fails against it. Members of a
		// -reuseport-group share the port on purpose.
		if err := checkTCPFree(addr); err != nil {
			return fmt.Errorf("-h2/-h1: TCP port %d is in use by another listener: %w", udp.Port, err)
		}
	}
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("-h2/-h1: listen on TCP: %w", err)
	}
	t := &tcpCarriers{ln: ln, served: make(chan error, 1)}
	d.tcp = t
	opts := proxy.TCPOptions{H2: d.cfg.h2, H1: d.cfg.h1, AltSvc: proxy.AltSvcH3(udp.Port)}
	go func() { t.served <- d.proxy.ServeTCP(ln, tlsConf, opts) }()
	d.log.Info("serving on TCP", "listen", ln.Addr().String(), "h2", d.cfg.h2, "h1", d.cfg.h1)
	return nil
}

// checkTCPFree fails if a listener holds addr already. Go's listeners set
// SO_REUSEADDR, so connections of an earlier run left in TIME_WAIT do not
// make it fail.
func checkTCPFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// closeTCP waits for ServeTCP, which the proxy's Shutdown or Close ended.
func (d *daemon) closeTCP() {
	if d.tcp == nil {
		return
	}
	d.tcp.ln.Close()
	if err := <-d.tcp.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		d.log.Debug("ServeTCP returned", "error", err)
	}
}

// reexecForH2 re-executes the daemon with GODEBUG=http2xconnect=1 when its
// command line serves HTTP/2 (-h2, or -dev) and the setting is missing:
// net/http reads it once, at package init, so it cannot be set later.
// syscall.Exec replaces the program in place: the PID stays the same (a
// supervisor or `make run` keeps the process it started), and so do the
// arguments, the other environment and the standard descriptors. It
// returns only on failure, or when nothing is to be done.
func reexecForH2(args []string) error {
	if !servesH2(args) {
		return nil
	}
	if err := proxy.ReexecWithExtendedConnect(); err != nil {
		fmt.Fprintln(os.Stderr, "masqroute: cannot restart with GODEBUG="+proxy.ExtendedConnectEnv+":", err)
		return err
	}
	return nil
}

// servesH2 reports whether the command line args (without the program
// name) run the daemon with HTTP/2: -h2, or -dev without -h2=false.
func servesH2(args []string) bool {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return false // a subcommand (client, token, version, help)
	}
	wants := false
	for _, a := range args {
		if a == "--" {
			break
		}
		switch strings.TrimLeft(a, "-") {
		case "dev", "h2", "dev=true", "h2=true":
			wants = true
		case "h2=false":
			return false
		}
	}
	return wants
}

// A tcpCarrierName is a TCP carrier the daemon serves: its name and its
// client -carrier value.
type tcpCarrierName struct{ name, flag string }

// tcpCarriers are the TCP carriers served, for the banner.
func (d *daemon) tcpCarriers() []tcpCarrierName {
	var cs []tcpCarrierName
	if d.tcp == nil {
		return nil
	}
	if d.cfg.h2 {
		cs = append(cs, tcpCarrierName{"HTTP/2", "h2"})
	}
	if d.cfg.h1 {
		cs = append(cs, tcpCarrierName{"HTTP/1.1", "h1"})
	}
	return cs
}

func (d *daemon) tcpCarrierNames() []string {
	var names []string
	for _, c := range d.tcpCarriers() {
		names = append(names, c.name)
	}
	return names
}
