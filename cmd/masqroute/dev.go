package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/masqroute/masqroute/engine/proxy"
)

// bannerEnd is the banner's last line; tests wait for it.
const bannerEnd = "Press Ctrl-C to stop."

// printBanner tells a newcomer, in -dev mode, where everything is and the
// exact command that sends traffic through the proxy.
func (d *daemon) printBanner(w io.Writer) {
	proxyAddr := dialable(d.ln.Addr().String())
	echoAddr := d.echo.Addr().String()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p("")
	p("masqroute: DEVELOPMENT MODE")
	p("  !! Loopback targets are ALLOWED (%s): any client of this proxy can reach", prefixList())
	p("  !! UDP services on this host. Never run -dev where others can reach the proxy.")
	p("")
	protocols := "CONNECT-UDP"
	if d.cfg.ip != "" {
		protocols += ", CONNECT-IP into " + d.cfg.ip
	}
	p("  proxy     %s  (QUIC, HTTP/3, %s)", d.ln.Addr(), protocols)
	if d.tcp != nil {
		tcpProtocols := "CONNECT-UDP, CONNECT-IP"
		if d.cfg.connectTCP && d.cfg.h2 {
			tcpProtocols += "; CONNECT (TCP) over HTTP/2"
		}
		p("            %s  (TCP, %s: %s)", d.tcp.ln.Addr(), strings.Join(d.tcpCarrierNames(), ", "), tcpProtocols)
	}
	p("  template  %s", d.cfg.template)
	switch {
	case d.caFile != "" && d.cfg.devDir != "":
		p("  CA file   %s  (clients trust it with -ca; kept for the next start)", d.caFile)
	case d.caFile != "":
		p("  CA file   %s  (clients trust it with -ca; a new one each start, -dev-dir keeps one)", d.caFile)
	}
	p("  echo      %s  (UDP echo target)", echoAddr)
	if d.ipHosts != "" {
		p("  ip        CONNECT-IP into a userspace network; its host %s answers ping", d.ipHosts)
		p("            and echoes UDP on port 7")
	}
	p("")
	p("Send traffic through the proxy:")
	p("  %s", d.clientCommand(proxyAddr, echoAddr))
	for _, c := range d.tcpCarriers() {
		p("The same over TCP, %s:", c.name)
		p("  %s -carrier %s", d.clientCommand(proxyAddr, echoAddr), c.flag)
	}
	if d.ipHosts != "" {
		p("Ping through a CONNECT-IP tunnel, with connect-ip-go's client:")
		p("  %s", d.ipClientCommand(proxyAddr))
	}
	if cmd := d.tcpClientCommand(proxyAddr, ""); cmd != "" {
		p("A TCP connection through the proxy (CONNECT), to its own metrics:")
		p("  %s", cmd)
		if d.tcp != nil && d.cfg.h2 {
			p("The same over TCP, HTTP/2:")
			p("  %s", d.tcpClientCommand(proxyAddr, "h2"))
		}
	}
	p("")
	p("Look inside:")
	if u := d.obs.metricsURL(); u != "" {
		p("  metrics   curl -s %s | grep '^masqroute_'", u)
	} else {
		p("  metrics   off (-metrics)")
	}
	if u := d.obs.pprofURL(); u != "" {
		p("  pprof     curl -s %s  (go tool pprof '%sprofile?seconds=10')", u, u)
	} else {
		p("  pprof     off (-pprof)")
	}
	if d.obs.gops {
		pid := os.Getpid()
		p("  gops      gops stack %d; gops stats %d; gops trace %d", pid, pid, pid)
		p("            (go install github.com/google/gops@latest if gops is missing)")
	} else {
		p("  gops      off (-gops)")
	}
	p("")
	p(bannerEnd)
	io.WriteString(w, b.String())
}

// clientCommand is the client command line that sends five datagrams to
// the echo target through this proxy.
func (d *daemon) clientCommand(proxyAddr, echoAddr string) string {
	args := []string{commandName(), "client", "-proxy", proxyAddr}
	if d.caFile != "" {
		args = append(args, "-ca", shellQuote(d.caFile))
	} else {
		args = append(args, "-insecure")
	}
	if d.cfg.template != proxy.DefaultUDPTemplate {
		args = append(args, "-template", shellQuote(d.cfg.template))
	}
	args = append(args, "-target", echoAddr, "-count", "5")
	return strings.Join(args, " ")
}

// ipClientCommand is the client command line that pings the netstack host
// through a CONNECT-IP tunnel.
func (d *daemon) ipClientCommand(proxyAddr string) string {
	host, _, _ := strings.Cut(d.ipHosts, ",")
	args := []string{commandName(), "client", "-ip", "-proxy", proxyAddr}
	if d.caFile != "" {
		args = append(args, "-ca", shellQuote(d.caFile))
	} else {
		args = append(args, "-insecure")
	}
	args = append(args, "-target", strings.TrimSpace(host), "-count", "3")
	return strings.Join(args, " ")
}

// tcpClientCommand is a command line that fetches the metrics page through
// a CONNECT (TCP) tunnel, over carrier ("": the client's default, HTTP/3);
// "" when metrics are off.
func (d *daemon) tcpClientCommand(proxyAddr, carrier string) string {
	u, err := url.Parse(d.obs.metricsURL())
	if err != nil || u.Host == "" {
		return ""
	}
	args := []string{`printf 'GET /metrics HTTP/1.0\r\n\r\n' |`, commandName(), "client", "-proxy", proxyAddr}
	if d.caFile != "" {
		args = append(args, "-ca", shellQuote(d.caFile))
	} else {
		args = append(args, "-insecure")
	}
	if carrier != "" {
		args = append(args, "-carrier", carrier)
	}
	args = append(args, "-tcp", u.Host, "| grep -c '^masqroute_'")
	return strings.Join(args, " ")
}

func prefixList() string {
	s := make([]string, len(loopbackTargets))
	for i, p := range loopbackTargets {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// shellSafe are the bytes a POSIX shell word may hold unquoted.
const shellSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/@%+="

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !strings.ContainsRune(shellSafe, r) }) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
