package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/proxy"
)

// clientConfig is the client subcommand's command line.
type clientConfig struct {
	proxy    string
	ca       string
	insecure bool
	header   http.Header // Proxy-Authorization from -token-file
	template string
	target   string
	count    int
	size     int
	interval time.Duration
	timeout  time.Duration
	ip       bool   // CONNECT-IP: ping -target with ICMP echo through connect-ip-go
	ipPath   string // the CONNECT-IP request path (a template without variables)
	tcp      string // CONNECT (TCP): connect stdin/stdout to this host:port (clienttcp.go)
	logLevel slog.Level
	carrier  string // client.CarrierH3, H2, H1 or Auto
}

// seqLen is the sequence number at the start of every payload.
const seqLen = 8

func parseClientFlags(args []string, stderr io.Writer) (*clientConfig, error) {
	c := &clientConfig{}
	fs := flag.NewFlagSet("masqroute client", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: masqroute client -target HOST:PORT [flags]\n\n"+
			"Opens a CONNECT-UDP tunnel through a proxy to a UDP echo target, sends -count\n"+
			"datagrams of -size bytes, prints each round-trip time and a summary. It exits\n"+
			"non-zero if no datagram came back.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.proxy, "proxy", "127.0.0.1:4433", "proxy `address` (host:port, UDP)")
	fs.StringVar(&c.ca, "ca", "", "PEM `file` of the certificate(s) to trust for the proxy (default: the system's roots)")
	fs.BoolVar(&c.insecure, "insecure", false, "do not verify the proxy's certificate (quick tries only)")
	tokenFile := fs.String("token-file", "", "`file` holding the bearer token the proxy wants (masqroute token makes one)")
	fs.StringVar(&c.template, "template", proxy.DefaultUDPTemplate, "the proxy's CONNECT-UDP URI `template`")
	fs.StringVar(&c.target, "target", "", "UDP echo target `host:port`, as the proxy reaches it (required)")
	fs.IntVar(&c.count, "count", 5, "datagrams to send (0: until interrupted)")
	fs.IntVar(&c.size, "size", 64, "payload size in `bytes` (at least 8: a sequence number)")
	fs.DurationVar(&c.interval, "interval", 200*time.Millisecond, "time between sends")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "how long to wait for the connection, the tunnel, and each reply")
	fs.BoolVar(&c.ip, "ip", false, "CONNECT-IP instead: open an IP tunnel with connect-ip-go's client and ping -target\n"+
		"(an IP address behind the proxy) with ICMP echo")
	fs.StringVar(&c.ipPath, "ip-path", "/.well-known/masque/ip/", "with -ip: the request `path`, a template without variables")
	fs.StringVar(&c.tcp, "tcp", "", "CONNECT (TCP) instead: connect stdin and stdout to this `host:port` through the proxy, like nc\n"+
		"(the proxy needs -connect-tcp; stdin's end half-closes the connection; -carrier h3, h2 or auto)")
	fs.StringVar(&c.carrier, "carrier", client.CarrierH3, "what to reach the proxy over: h3 (HTTP/3, QUIC), h2 (HTTP/2 on TCP), h1 (HTTP/1.1\n"+
		"Upgrade on TCP) or auto (h3, falling back to h2 when QUIC does not connect within 300ms)")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelWarn, "log `level` on stderr: debug, info, warn or error")
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	var bad string
	switch {
	case c.target == "" && c.tcp == "":
		bad = "-target is required"
	case c.count < 0:
		bad = "-count must not be negative"
	case c.size < seqLen:
		bad = fmt.Sprintf("-size must be at least %d", seqLen)
	case c.interval < 0:
		bad = "-interval must not be negative"
	case c.timeout <= 0:
		bad = "-timeout must be positive"
	case !slices.Contains([]string{client.CarrierH3, client.CarrierH2, client.CarrierH1, client.CarrierAuto}, c.carrier):
		bad = "-carrier must be h3, h2, h1 or auto"
	case c.ip && c.carrier != client.CarrierH3:
		bad = "-ip runs on HTTP/3 only (connect-ip-go's client): drop -carrier"
	case c.tcp != "" && c.carrier == client.CarrierH1:
		bad = "-tcp runs on h3, h2 or auto (HTTP/1.1 has no CONNECT here)"
	}
	if bad != "" {
		return nil, badUsage(fs.Name(), "%s", bad)
	}
	if *tokenFile != "" {
		tok, err := readTokenFile(*tokenFile)
		if err != nil {
			return nil, err
		}
		c.header = http.Header{"Proxy-Authorization": {"Bearer " + tok}}
	}
	return c, nil
}

func (c *clientConfig) tlsConfig() (*tls.Config, error) {
	switch {
	case c.insecure:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, nil
	case c.ca != "":
		return devcert.TrustPEMFile(c.ca)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13}, nil
}

// pingStats is the client's tally.
type pingStats struct {
	sent, received, late int
	min, max, sum        time.Duration
}

func (s *pingStats) add(rtt time.Duration) {
	if s.received == 0 || rtt < s.min {
		s.min = rtt
	}
	s.max = max(s.max, rtt)
	s.sum += rtt
	s.received++
}

func (s *pingStats) summary() string {
	lost := s.sent - s.received
	loss := 0.0
	if s.sent > 0 {
		loss = 100 * float64(lost) / float64(s.sent)
	}
	line := fmt.Sprintf("%d sent, %d received, %d lost (%.0f%% loss)", s.sent, s.received, lost, loss)
	if s.late > 0 {
		line += fmt.Sprintf(", %d late", s.late)
	}
	if s.received > 0 {
		avg := s.sum / time.Duration(s.received)
		line += fmt.Sprintf(", rtt min/avg/max = %s/%s/%s ms", ms(s.min), ms(avg), ms(s.max))
	}
	return line
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// runClient is the client subcommand.
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseClientFlags(args, stderr)
	if err != nil {
		return err
	}
	base, err := newLogger(stderr, "text", cfg.logLevel)
	if err != nil {
		return err
	}
	routeStdLog(base)
	log := base.With("component", "client")
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	if cfg.ip {
		return runClientIP(ctx, cfg, tlsConf, stdout)
	}
	if cfg.tcp != "" {
		return runClientTCP(ctx, cfg, tlsConf, clientStdin, stdout, log)
	}

	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	conn, err := client.Dial(dctx, cfg.proxy, &client.Config{TLSConfig: tlsConf, Template: cfg.template, Header: cfg.header, Logger: log,
		Carrier: cfg.carrier})
	if err != nil {
		return fmt.Errorf("connect to proxy: %w", err)
	}
	defer conn.Close()
	u, err := conn.DialUDP(dctx, cfg.target)
	if err != nil {
		if pe, ok := errors.AsType[*client.ProxyError](err); ok {
			return fmt.Errorf("the proxy refused the tunnel to %s: %d %s", cfg.target, pe.Status, pe.ProxyStatus)
		}
		return fmt.Errorf("open tunnel to %s: %w", cfg.target, err)
	}
	defer u.Close()
	fmt.Fprintf(stdout, "tunnel to %s through %s open in %s ms (%s)\n", cfg.target, cfg.proxy, ms(time.Since(start)), conn.Carrier())

	// Cancelling ctx (Ctrl-C) ends a Read in progress.
	stopRead := context.AfterFunc(ctx, func() { u.SetReadDeadline(time.Now()) })
	defer stopRead()

	pg := &pinger{cfg: cfg, u: u, out: stdout, payload: bytes.Repeat([]byte{'m'}, cfg.size), buf: make([]byte, 64<<10)}
	if err := pg.run(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "--- %s through %s ---\n%s\n", cfg.target, cfg.proxy, pg.st.summary())
	if pg.st.received == 0 {
		return errors.New("no datagram came back")
	}
	return nil
}

// pinger sends numbered datagrams through a tunnel and times their echoes.
type pinger struct {
	cfg     *clientConfig
	u       *client.UDPConn
	out     io.Writer
	payload []byte // sequence number, then filler
	buf     []byte
	st      pingStats
}

// run sends -count datagrams, -interval apart, each after the previous
// one's reply or timeout, until ctx is done.
func (pg *pinger) run(ctx context.Context) error {
	tick := time.NewTicker(max(pg.cfg.interval, time.Millisecond))
	defer tick.Stop()
	for seq := uint64(1); pg.cfg.count == 0 || seq <= uint64(pg.cfg.count); seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		binary.BigEndian.PutUint64(pg.payload, seq)
		sentAt := time.Now()
		if _, err := pg.u.Write(pg.payload); err != nil {
			if tl, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
				return fmt.Errorf("-size %d does not fit in one QUIC datagram of this connection "+
					"(%d bytes at most, HTTP datagram framing included)", pg.cfg.size, tl.MaxDatagramPayloadSize)
			}
			return fmt.Errorf("send: %w", err)
		}
		pg.st.sent++
		pg.await(ctx, seq, sentAt)
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// await reads replies until the one for seq arrives or the timeout passes;
// replies to earlier datagrams are counted late.
func (pg *pinger) await(ctx context.Context, seq uint64, sentAt time.Time) {
	pg.u.SetReadDeadline(sentAt.Add(pg.cfg.timeout))
	for ctx.Err() == nil {
		n, err := pg.u.Read(pg.buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if ctx.Err() == nil {
				fmt.Fprintf(pg.out, "seq=%d: no reply within %s\n", seq, pg.cfg.timeout)
			}
			return
		}
		if err != nil {
			fmt.Fprintf(pg.out, "seq=%d: %v\n", seq, err)
			return
		}
		got := pg.buf[:n]
		if n < seqLen {
			fmt.Fprintf(pg.out, "short reply (%d bytes)\n", n)
			continue
		}
		if rs := binary.BigEndian.Uint64(got); rs != seq {
			fmt.Fprintf(pg.out, "late reply seq=%d\n", rs)
			pg.st.late++
			continue
		}
		rtt := time.Since(sentAt)
		if !bytes.Equal(got, pg.payload) {
			fmt.Fprintf(pg.out, "seq=%d: reply differs from what was sent (%d bytes)\n", seq, n)
			return
		}
		pg.st.add(rtt)
		fmt.Fprintf(pg.out, "%d bytes from %s: seq=%d time=%s ms\n", n, pg.cfg.target, seq, ms(rtt))
		return
	}
}
