package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/masqroute/masqroute/engine/client"
)

// clientStdin is what `masqroute client -tcp` sends; tests replace it.
var clientStdin io.Reader = os.Stdin

// runClientTCP is `masqroute client -tcp HOST:PORT`: one CONNECT (TCP)
// tunnel with stdin copied to the target and the target's bytes to
// stdout, as nc does, over -carrier's HTTP/3 or HTTP/2. The end of stdin
// half-closes the tunnel (the target sees EOF); the command ends when the
// target has closed its side, or on Ctrl-C.
func runClientTCP(ctx context.Context, cfg *clientConfig, tlsConf *tls.Config, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	conn, err := client.Dial(dctx, cfg.proxy, &client.Config{TLSConfig: tlsConf, Header: cfg.header, Logger: log,
		Carrier: cfg.carrier})
	if err != nil {
		return fmt.Errorf("connect to proxy: %w", err)
	}
	defer conn.Close()
	tc, err := conn.DialTCP(dctx, cfg.tcp)
	if err != nil {
		if pe, ok := errors.AsType[*client.ProxyError](err); ok {
			return fmt.Errorf("the proxy refused the tunnel to %s: %d %s", cfg.tcp, pe.Status, pe.ProxyStatus)
		}
		return fmt.Errorf("open tunnel to %s: %w", cfg.tcp, err)
	}
	defer tc.Close()
	// Ctrl-C ends both copies.
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	go func() {
		if _, err := io.Copy(tc, stdin); err == nil {
			tc.CloseWrite()
		}
	}()
	if _, err := io.Copy(stdout, tc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("tunnel to %s: %w", cfg.tcp, err)
	}
	return nil
}
