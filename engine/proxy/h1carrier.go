package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The HTTP/1.1 carrier (RFC 9298 §3.2, RFC 9484 §3.2): a GET with
// "Connection: Upgrade" and "Upgrade: connect-udp" (or connect-ip), answered
// "101 Switching Protocols"; from then on the connection carries the
// tunnel's capsules both ways, and its end ends the tunnel. One tunnel per
// connection. net/http parses the request; tcpServer.ServeHTTP hands an upgrade to
// serveH1Tunnel, which takes the connection over (Hijack) before the
// proxy's handler runs, so that every answer, 101 or a refusal, is written
// by an h1Writer on the raw connection.

// upgradeTokens returns the protocols an HTTP/1.1 upgrade request asks for,
// in its order of preference, or an error when r is not a well-formed
// upgrade: method GET, a Connection header with the "upgrade" option, an
// Upgrade header with at least one protocol token (without a version: the
// MASQUE tokens have none).
func upgradeTokens(r *http.Request) ([]string, error) {
	if r.Method != http.MethodGet {
		return nil, errors.New("upgrade needs GET")
	}
	if !headerHasToken(r.Header["Connection"], "upgrade") {
		return nil, errors.New(`no "Connection: Upgrade"`)
	}
	var tokens []string
	for _, v := range r.Header["Upgrade"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			if !isToken(tok) {
				return nil, fmt.Errorf("bad Upgrade protocol %q", tok)
			}
			tokens = append(tokens, strings.ToLower(tok))
		}
	}
	if len(tokens) == 0 {
		return nil, errors.New("no Upgrade protocol")
	}
	return tokens, nil
}

// isUpgradeRequest reports whether r asks to upgrade its connection.
func isUpgradeRequest(r *http.Request) bool {
	_, err := upgradeTokens(r)
	return err == nil
}

// headerHasToken reports whether a comma-separated header has tok
// (case-insensitive).
func headerHasToken(vals []string, tok string) bool {
	for _, v := range vals {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// upgradeProtocol is the protocol the tunnel runs: the first token a kind
// is registered for, or the first token (answered 501).
func (p *Proxy) upgradeProtocol(tokens []string) string {
	for _, tok := range tokens {
		if _, ok := p.byProto[tok]; ok {
			return tok
		}
	}
	return tokens[0]
}

// serveH1Tunnel serves one upgrade request: it takes the connection over,
// runs the proxy's handler with an h1Writer, and ends the connection with
// the tunnel.
func (s *tcpServer) serveH1Tunnel(t *tcpCarrier, w http.ResponseWriter, r *http.Request) {
	tokens, _ := upgradeTokens(r) // ServeHTTP checked it
	proto := s.p.upgradeProtocol(tokens)
	hdr := w.Header().Clone()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot upgrade", http.StatusInternalServerError)
		return
	}
	defer t.end() // a hijacked connection is its handler's to end
	defer conn.Close()
	conn.SetDeadline(time.Time{}) // net/http's header deadline no longer applies
	hw := &h1Writer{conn: conn, bw: brw.Writer, proto: proto, header: hdr}
	st := t.newStream(proto, hw)
	st.cancelRead = func() { conn.SetReadDeadline(time.Unix(1, 0)) }
	st.cancelWrite = func() { conn.Close() }
	r = r.WithContext(context.WithValue(r.Context(), tcpStreamKey{}, st))
	r.Body = io.NopCloser(brw.Reader) // the capsules, with what net/http read ahead
	if r.URL.IsAbs() {                // absolute form (RFC 9298's example): match the template on host and path
		r.RequestURI = r.URL.RequestURI()
	}
	s.p.topHandler().ServeHTTP(hw, r)
	st.done()
	hw.FlushError()
}

// An h1Writer is the ResponseWriter of an upgrade request on the hijacked
// connection: a 2xx becomes "101 Switching Protocols", anything else a
// final response after which the connection closes.
type h1Writer struct {
	conn   net.Conn
	bw     *bufio.Writer
	proto  string
	header http.Header

	mu    sync.Mutex // guards what follows, and orders writes
	wrote bool
}

func (w *h1Writer) Header() http.Header { return w.header }

func (w *h1Writer) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *h1Writer) writeHeaderLocked(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.header
	if code >= 200 && code < 300 {
		fmt.Fprintf(w.bw, "HTTP/1.1 101 Switching Protocols\r\n")
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", w.proto)
	} else {
		fmt.Fprintf(w.bw, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
		h.Set("Connection", "close") // the body ends with the connection
		h.Del("Content-Length")
	}
	h.Write(w.bw)
	w.bw.WriteString("\r\n")
}

func (w *h1Writer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(http.StatusOK)
	return w.bw.Write(b)
}

// FlushError is what http.ResponseController.Flush calls.
func (w *h1Writer) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bw.Flush()
}

func (w *h1Writer) Flush()               { w.FlushError() }
func (w *h1Writer) write(b []byte) error { _, err := w.Write(b); return err }
func (w *h1Writer) flush() error         { return w.FlushError() }

// unblock makes a write blocked on a client that does not read fail now.
func (w *h1Writer) unblock() { w.conn.SetWriteDeadline(time.Unix(1, 0)) }
