package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/masqroute/masqroute/engine/proxy"
)

// The daemon's authentication: -auth-tokens (bearer tokens, hashed at rest,
// read again on SIGHUP), -client-ca (mTLS), and the refusal to serve a
// non-loopback address with neither unless -allow-unauthenticated says so.
// -dev needs none of them: it listens on loopback.

// daemonAuth is what the flags load for the proxy.
type daemonAuth struct {
	tokens    *proxy.TokenSet // nil without -auth-tokens
	clientCAs *x509.CertPool  // nil without -client-ca
}

// errOpenProxy is the one line the daemon exits with when it would be an
// open proxy on a reachable address.
var errOpenProxy = errors.New("refusing to serve a non-loopback -listen address without authentication: " +
	"give -auth-tokens FILE or -client-ca FILE, or -allow-unauthenticated to run an open proxy")

// checkAuth refuses a configuration that would serve anyone who can reach a
// non-loopback address.
func (c *serveConfig) checkAuth() error {
	if c.authTokens != "" || c.clientCA != "" || c.allowUnauthenticated || c.dev {
		return nil
	}
	if isLoopbackListen(c.listen) {
		return nil
	}
	return errOpenProxy
}

// isLoopbackListen reports whether a -listen address can only be reached
// from this host: a loopback IP or "localhost". An empty or unspecified
// host, or any other name, may be reachable from elsewhere.
func isLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// loadAuth reads -auth-tokens and -client-ca. The token file joins the
// reload steps.
func (d *daemon) loadAuth() (daemonAuth, error) {
	var a daemonAuth
	cfg := d.cfg
	if cfg.authTokens != "" {
		ts, err := proxy.LoadTokenFile(cfg.authTokens)
		if err != nil {
			return a, fmt.Errorf("-auth-tokens: %w", err)
		}
		a.tokens = ts
		d.log.Info("bearer tokens required", "file", cfg.authTokens, "tokens", ts.Len())
		d.reloadSteps = append(d.reloadSteps, reloadStep{name: "auth tokens", reload: func() error {
			if err := ts.Reload(); err != nil {
				return err
			}
			d.log.Info("bearer tokens reloaded", "file", cfg.authTokens, "tokens", ts.Len())
			return nil
		}})
	}
	if cfg.clientCA != "" {
		pem, err := os.ReadFile(cfg.clientCA)
		if err != nil {
			return a, fmt.Errorf("-client-ca: %w", err)
		}
		a.clientCAs = x509.NewCertPool()
		if !a.clientCAs.AppendCertsFromPEM(pem) {
			return a, fmt.Errorf("-client-ca: no PEM certificate in %s", cfg.clientCA)
		}
		d.log.Info("client certificates required", "ca", cfg.clientCA)
	}
	if a.tokens == nil && a.clientCAs == nil && !cfg.dev {
		d.log.Warn("no authentication: anyone who reaches the listen address may use the proxy", "listen", cfg.listen)
	}
	return a, nil
}

// runToken is the token subcommand: it makes a random bearer token, writes
// it to -token-file for a client (mode 0600), and prints the line the
// proxy's -auth-tokens file holds for it.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("masqroute token", flag.ContinueOnError)
	out := fs.String("token-file", "", "write the new token to this `file` (mode 0600, must not exist) for a client's -token-file (required)")
	label := fs.String("label", "", "a `name` to put after the hash, for the operator")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: masqroute token -token-file FILE [-label NAME] >> tokens.txt\n\n"+
			"Makes a random bearer token, writes it to FILE for a client, and prints its hash\n"+
			"line for the proxy's -auth-tokens file (SIGHUP makes a running proxy read it).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		return badUsage(fs.Name(), "-token-file is required")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, tok)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	line := proxy.HashToken(tok)
	if *label != "" {
		line += " " + strings.Join(strings.Fields(*label), "_")
	}
	_, err = fmt.Fprintln(stdout, line)
	return err
}

// readTokenFile reads a client's -token-file: the token, surrounding white
// space removed.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("-token-file: %s does not hold one token", path)
	}
	return tok, nil
}
