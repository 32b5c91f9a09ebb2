package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Authentication: who may open tunnels (RFC 9298 §7, RFC 9484 §11: a proxy
// restricts its use to authorized clients). Two controls, each optional and
// each enforced on its own when configured:
//
//   - bearer tokens (Config.Tokens): every tunnel request carries
//     "Proxy-Authorization: Bearer TOKEN" (or "Authorization: Bearer
//     TOKEN"); the token's SHA-256 must be in the TokenSet. A refusal is
//     407 with "Proxy-Authenticate: Bearer" and Proxy-Status, counted by
//     reason and logged at INFO with the client address, at most once a
//     second.
//   - client certificates (Config.ClientCAs, applied by TLSConfig): a
//     client without a certificate that chains to one of the CAs fails the
//     TLS handshake; counted by reason.

// Reasons an authentication refusal is counted under (Stats.AuthRefused).
const (
	AuthTokenMissing   = "token_missing"   // no Bearer credentials in the request
	AuthTokenMalformed = "token_malformed" // an Authorization header that is not "Bearer TOKEN"
	AuthTokenInvalid   = "token_invalid"   // a token that is not in the set
	AuthCertMissing    = "cert_missing"    // TLS handshake without a client certificate
	AuthCertInvalid    = "cert_invalid"    // a client certificate that does not verify
)

// authReasons fixes the order of authCounters' slots.
var authReasons = [...]string{AuthTokenMissing, AuthTokenMalformed, AuthTokenInvalid, AuthCertMissing, AuthCertInvalid}

// authCounters count refusals by reason, one slot per authReasons entry.
type authCounters struct {
	n       [len(authReasons)]atomic.Uint64
	lastLog atomic.Int64 // unix nanoseconds of the last refusal logged
	quiet   atomic.Uint64
}

func (a *authCounters) inc(reason string) {
	for i, r := range authReasons {
		if r == reason {
			a.n[i].Add(1)
			return
		}
	}
}

func (a *authCounters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(authReasons))
	for i, r := range authReasons {
		m[r] = a.n[i].Load()
	}
	return m
}

// logRefusal logs one authentication refusal at INFO, at most once a
// second; refusals in between are counted and reported with the next one.
func (p *Proxy) logRefusal(reason, remote string) {
	now := time.Now().UnixNano()
	last := p.auth.lastLog.Load()
	if now-last < int64(time.Second) || !p.auth.lastLog.CompareAndSwap(last, now) {
		p.auth.quiet.Add(1)
		return
	}
	p.log.Info("masqroute: authentication refused", "reason", reason, "remote", remote,
		"suppressed", p.auth.quiet.Swap(0))
}

// A TokenSet is the set of bearer tokens a proxy accepts, kept as SHA-256
// hashes: the file it is read from holds no token in the clear. It is safe
// for concurrent use; Load replaces the whole set at once.
//
// The file has one hash a line, "sha256:" and 64 hex digits, optionally
// followed by white space and a label (for the operator; never logged).
// Blank lines and lines starting with '#' are skipped. Any other line is an
// error: a token pasted in the clear is refused, not hashed on the fly.
type TokenSet struct {
	path   string
	hashes atomic.Pointer[[][sha256.Size]byte]
}

// LoadTokenFile reads a token file; see TokenSet.
func LoadTokenFile(path string) (*TokenSet, error) {
	ts := &TokenSet{path: path}
	if err := ts.Reload(); err != nil {
		return nil, err
	}
	return ts, nil
}

// Reload reads the file again and, if it parses, replaces the set;
// otherwise the old set stays.
func (ts *TokenSet) Reload() error {
	b, err := os.ReadFile(ts.path)
	if err != nil {
		return err
	}
	h, err := ParseTokenHashes(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", ts.path, err)
	}
	ts.hashes.Store(&h) // publish the new set whole
	return nil
}

// Len is the number of tokens in the set.
func (ts *TokenSet) Len() int { return len(*ts.hashes.Load()) }

// ParseTokenHashes parses a token file's content; see TokenSet.
func ParseTokenHashes(r io.Reader) ([][sha256.Size]byte, error) {
	var out [][sha256.Size]byte
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		field, _, _ := strings.Cut(strings.ReplaceAll(s, "\t", " "), " ")
		hexHash, ok := strings.CutPrefix(field, "sha256:")
		var h [sha256.Size]byte
		if !ok || len(hexHash) != hex.EncodedLen(sha256.Size) {
			return nil, fmt.Errorf("line %d: want sha256:<64 hex digits> (masqroute token makes one)", line)
		}
		if _, err := hex.Decode(h[:], []byte(hexHash)); err != nil {
			return nil, fmt.Errorf("line %d: want sha256:<64 hex digits> (masqroute token makes one)", line)
		}
		out = append(out, h)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no token hashes")
	}
	return out, nil
}

// HashToken returns the line a token file holds for token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Contains reports whether token is in the set. It hashes token and
// compares the hash with every hash in the set, in constant time each, and
// does not stop at a match: the time taken depends only on the set's size.
func (ts *TokenSet) Contains(token string) bool {
	h := sha256.Sum256([]byte(token))
	found := 0
	for _, k := range *ts.hashes.Load() {
		found |= subtle.ConstantTimeCompare(h[:], k[:])
	}
	return found == 1
}

// bearerToken takes the token out of a request's Proxy-Authorization or,
// failing that, Authorization header. The reason is "" when there is a
// token.
func bearerToken(r *http.Request) (token, reason string) {
	v := r.Header.Get("Proxy-Authorization")
	if v == "" {
		v = r.Header.Get("Authorization")
	}
	if v == "" {
		return "", AuthTokenMissing
	}
	scheme, tok, ok := strings.Cut(v, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", AuthTokenMalformed
	}
	return tok, ""
}

// checkToken refuses a request without a token from Config.Tokens.
func (p *Proxy) checkToken(r *http.Request) *StatusError {
	tok, reason := bearerToken(r)
	if reason == "" && !p.cfg.Tokens.Contains(tok) {
		reason = AuthTokenInvalid
	}
	if reason == "" {
		return nil
	}
	p.auth.inc(reason)
	p.logRefusal(reason, r.RemoteAddr)
	return &StatusError{Status: http.StatusProxyAuthRequired, ProxyError: proxyErrHTTPRequestDenied,
		Details: "authentication required", Header: http.Header{"Proxy-Authenticate": {`Bearer realm="` + p.cfg.Name + `"`}}}
}

// TLSConfig returns a copy of base with what the proxy's authentication
// needs: with Config.ClientCAs, a client certificate that chains to one of
// them is required (ExtKeyUsageClientAuth), and a handshake without one
// fails and is counted. The verification runs in VerifyConnection, not
// through ClientAuth = RequireAndVerifyClientCert, so that a failure can be
// counted by reason.
func (p *Proxy) TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if p.cfg.ClientCAs == nil {
		return c
	}
	pool := p.cfg.ClientCAs
	c.ClientAuth = tls.RequestClientCert
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			p.auth.inc(AuthCertMissing)
			return errors.New("masqroute: a client certificate is required")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			p.auth.inc(AuthCertInvalid)
			return fmt.Errorf("masqroute: client certificate: %w", err)
		}
		if prev != nil {
			return prev(cs)
		}
		return nil
	}
	return c
}
