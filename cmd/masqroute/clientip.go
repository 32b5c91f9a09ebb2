package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	connectip "github.com/quic-go/connect-ip-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/yosida95/uritemplate/v3"

	"github.com/masqroute/masqroute/engine/packetio"
)

// runClientIP is `masqroute client -ip`: it opens a CONNECT-IP tunnel with
// connect-ip-go's client (a peer masqroute did not write) and pings
// -target, an IP address behind the proxy, with ICMP echo.
func runClientIP(ctx context.Context, cfg *clientConfig, tlsConf *tls.Config, stdout io.Writer) error {
	dst, err := netip.ParseAddr(cfg.target)
	if err != nil {
		return fmt.Errorf("-target with -ip is an IP address: %w", err)
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	// connect-ip-go sends templates without variables only.
	tmpl, err := uritemplate.New("https://" + cfg.proxy + cfg.ipPath)
	if err != nil {
		return fmt.Errorf("-ip-path: %w", err)
	}
	req, err := connectip.NewRequest(dctx, tmpl)
	if err != nil {
		return err
	}
	for k, v := range cfg.header {
		req.Header()[k] = v
	}
	conn, rsp, err := (&connectip.Transport{TLSClientConfig: tlsConf}).Dial(req)
	if err != nil {
		if rsp != nil {
			return fmt.Errorf("the proxy refused the tunnel: %d %s", rsp.StatusCode, rsp.Header.Get("Proxy-Status"))
		}
		return fmt.Errorf("open CONNECT-IP tunnel: %w", err)
	}
	defer conn.Close()
	assigned, err := conn.ReceiveAddressAssignment(dctx)
	if err != nil {
		return fmt.Errorf("address assignment: %w", err)
	}
	var src netip.Addr
	for _, a := range assigned {
		if a.IPPrefix.Addr().Is4() == dst.Is4() && !a.Rejected() {
			src = a.IPPrefix.Addr()
		}
	}
	if !src.IsValid() {
		return fmt.Errorf("the proxy assigned no address of %s's family: %v", dst, assigned)
	}
	if _, err := conn.Routes(dctx); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	fmt.Fprintf(stdout, "CONNECT-IP tunnel through %s open in %s ms; assigned %s\n", cfg.proxy, ms(time.Since(start)), src)

	replies := make(chan []byte, 16)
	go func() {
		defer close(replies)
		for {
			buf := make([]byte, 2048)
			n, err := conn.ReadPacket(buf)
			if err != nil {
				return
			}
			replies <- buf[:n]
		}
	}()
	var st pingStats
	payload := make([]byte, max(cfg.size, seqLen))
	for seq := 1; cfg.count == 0 || seq <= cfg.count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return finishIP(stdout, cfg, &st)
			case <-time.After(cfg.interval):
			}
		}
		sentAt := time.Now()
		pkt := packetio.BuildICMPEcho(src, dst, 0x6d71, uint16(seq), payload, 64, true)
		if icmp, err := conn.WritePacket(pkt); err != nil || icmp != nil {
			return fmt.Errorf("send: the client refused the packet (%v)", err)
		}
		st.sent++
		awaitEcho(ctx, cfg, replies, &st, seq, sentAt, stdout)
	}
	return finishIP(stdout, cfg, &st)
}

// awaitEcho waits for the echo reply numbered seq.
func awaitEcho(ctx context.Context, cfg *clientConfig, replies <-chan []byte, st *pingStats, seq int, sentAt time.Time, out io.Writer) {
	timeout := time.NewTimer(cfg.timeout)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timeout.C:
			fmt.Fprintf(out, "icmp_seq=%d: no reply within %s\n", seq, cfg.timeout)
			return
		case pkt, ok := <-replies:
			if !ok {
				fmt.Fprintf(out, "icmp_seq=%d: tunnel closed\n", seq)
				return
			}
			h, err := packetio.ParseHeader(pkt)
			if err != nil || len(h.Payload) < 8 {
				continue
			}
			typ, gotSeq := h.Payload[0], int(h.Payload[6])<<8|int(h.Payload[7])
			if (typ != 0 && typ != 129) || gotSeq != seq { // echo reply: ICMP 0, ICMPv6 129
				fmt.Fprintf(out, "%d bytes from %s: ICMP type %d\n", len(pkt), h.Src, typ)
				continue
			}
			rtt := time.Since(sentAt)
			st.add(rtt)
			fmt.Fprintf(out, "%d bytes from %s: icmp_seq=%d ttl=%d time=%s ms\n", len(pkt), h.Src, seq, h.HopLimit, ms(rtt))
			return
		}
	}
}

func finishIP(out io.Writer, cfg *clientConfig, st *pingStats) error {
	fmt.Fprintf(out, "--- %s through %s (CONNECT-IP) ---\n%s\n", cfg.target, cfg.proxy, st.summary())
	if st.received == 0 {
		return errors.New("no echo reply came back")
	}
	return nil
}
