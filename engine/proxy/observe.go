package proxy

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/masqroute/masqroute/engine"
)

// Hooks are told of what operators watch: tunnels that end, requests
// refused, tunnel setups. Each may be nil. They run on the proxy's
// goroutines (never on the per-datagram path) and must not block.
type Hooks struct {
	// TunnelEnded is called once per tunnel served by MASQUEHandler,
	// when its Handler has been closed (a CONNECT (TCP) tunnel: when both
	// of its copy loops have ended). Replies still queued for the client
	// at that moment are not in its counts.
	TunnelEnded func(TunnelInfo)
	// Refused is called for each request MASQUEHandler refused.
	Refused func(Refusal)
	// TunnelSetup is called when a tunnel's session start returns: d is
	// how long it took (resolution, policy, socket), err is nil when the
	// tunnel opened.
	TunnelSetup func(kind string, d time.Duration, err error)
}

// TunnelInfo describes one tunnel: a live one (Proxy.Tunnels) or one that
// has ended (Hooks.TunnelEnded).
type TunnelInfo struct {
	Stream  uint64    // request stream ID
	Kind    string    // :protocol (connect-udp, connect-ip, ...); KindConnectTCP for a CONNECT (TCP) tunnel
	Target  string    // CONNECT-UDP, CONNECT (TCP): the resolved target; CONNECT-IP: the assigned addresses
	Client  string    // the client's address
	Started time.Time // when the session started
	// Duration is how long it has been open (or was, once ended).
	Duration time.Duration
	// Datagrams (CONNECT-UDP payloads or CONNECT-IP packets) and their
	// bytes, each way; a CONNECT (TCP) tunnel counts bytes only.
	ToTarget, ToTargetBytes, ToClient, ToClientBytes uint64
	Dropped                                          uint64 // every drop reason of the tunnel's own counters
	// CloseReason says why it ended (closed, stream_reset, idle_timeout,
	// connection_closed, or the error's text; a CONNECT (TCP) tunnel:
	// closed when both sides ended with a FIN, aborted otherwise); ""
	// while live.
	CloseReason string
}

// Refusal describes one refused request.
type Refusal struct {
	Status  int    // HTTP status answered
	Reason  string // the Proxy-Status error parameter (RFC 9209), e.g. destination_ip_prohibited
	Details string // the Proxy-Status details parameter
	Kind    string // :protocol as asked; may be empty
	Client  string // the client's address
}

// A liveTunnel is an entry of Proxy.liveTunnels: a *requestHandler (a
// session's tunnel) or a *tcpTunnel.
type liveTunnel interface {
	info(now time.Time) TunnelInfo
}

// KindConnectTCP is TunnelInfo.Kind of a CONNECT (TCP) tunnel, a classic
// CONNECT, which has no :protocol.
const KindConnectTCP = "connect"

// tunnelCounts is how a tunnel's counters are found from its Handler:
// CONNECT-UDP and CONNECT-IP tunnels embed a replyBook.
func (b *replyBook) tunnelCounts() *tunnelCounters { return &b.c }

// info is a snapshot of h's tunnel; reason is set once it has ended.
func (h *requestHandler) info(now time.Time) TunnelInfo {
	r := h.req
	ti := TunnelInfo{
		Stream:   h.stream,
		Kind:     r.HTTP.Proto,
		Client:   r.HTTP.RemoteAddr,
		Started:  h.started,
		Duration: now.Sub(h.started),
	}
	switch t := h.Handler.(type) {
	case *udpTunnel:
		ti.Target = t.target.String()
	case *ipTunnel:
		var addrs []string
		for _, a := range []string{t.addr4.String(), t.addr6.String()} {
			if a != "invalid IP" {
				addrs = append(addrs, a)
			}
		}
		ti.Target = strings.Join(addrs, ",")
	default:
		ti.Target = r.HTTP.URL.Path
	}
	if b, ok := h.Handler.(interface{ tunnelCounts() *tunnelCounters }); ok {
		c := b.tunnelCounts()
		ti.ToTarget, ti.ToTargetBytes = c.toTarget.Load(), c.toTargetBytes.Load()
		ti.ToClient, ti.ToClientBytes = c.toClient.Load(), c.toClientBytes.Load()
		for i, f := range tunnelFields {
			if i >= 4 && f.c(c) != &c.targetUnreachable { // the first four carry traffic
				ti.Dropped += f.c(c).Load()
			}
		}
	}
	return ti
}

// opened registers h as live; Start calls it.
func (h *requestHandler) opened(p *Proxy, stream uint64) {
	h.p, h.stream, h.started = p, stream, time.Now()
	p.liveTunnels.Store(h, struct{}{})
}

// closed unregisters h and reports its end; Close calls it.
func (h *requestHandler) closed(reason error) {
	if h.p != nil {
		h.p.tunnelEnded(h, closeReason(reason))
	}
}

// tunnelEnded takes t off the live list and reports its end to
// Hooks.TunnelEnded with reason.
func (p *Proxy) tunnelEnded(t liveTunnel, reason string) {
	p.liveTunnels.Delete(t)
	if f := p.cfg.Hooks.TunnelEnded; f != nil {
		ti := t.info(time.Now())
		ti.CloseReason = reason
		f(ti)
	}
}

// closeReason names why a tunnel ended.
func closeReason(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, engine.ErrStreamReset):
		return "stream_reset"
	case errors.Is(err, ErrIdleTimeout):
		return "idle_timeout"
	case errors.Is(err, engine.ErrRouterClosed):
		return "connection_closed"
	case errors.Is(err, engine.ErrUnregistered):
		return "unregistered"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Tunnels returns a snapshot of the live tunnels served by MASQUEHandler
// (CONNECT-UDP, CONNECT-IP, CONNECT (TCP)), oldest first.
func (p *Proxy) Tunnels() []TunnelInfo {
	now := time.Now()
	var out []TunnelInfo
	p.liveTunnels.Range(func(k, _ any) bool {
		out = append(out, k.(liveTunnel).info(now))
		return true
	})
	slices.SortFunc(out, func(a, b TunnelInfo) int { return a.Started.Compare(b.Started) })
	return out
}

// setupDone reports a session start that returned after d.
func (p *Proxy) setupDone(kind string, start time.Time, err error) {
	if f := p.cfg.Hooks.TunnelSetup; f != nil {
		f(kind, time.Since(start), err)
	}
}

// statusWriter is the proxy's own HTTP/3 ResponseWriter, which knows the
// status it answered.
type statusWriter interface{ Status() int }

// refused reports a request that serveMASQUE did not turn into a tunnel,
// if it was answered with an error status (not when the client went away).
//
//go:noinline
func (p *Proxy) refused(w http.ResponseWriter, r *http.Request) {
	f := p.cfg.Hooks.Refused
	if f == nil {
		return
	}
	sw, ok := w.(statusWriter)
	if !ok || sw.Status() < 300 {
		return
	}
	ref := Refusal{Status: sw.Status(), Kind: r.Proto, Client: r.RemoteAddr}
	ref.Reason, ref.Details = proxyStatusParams(w.Header().Get("Proxy-Status"))
	f(ref)
}

// proxyStatusParams reads the error and details parameters of a
// Proxy-Status header written by writeStatus.
func proxyStatusParams(h string) (errType, details string) {
	l, err := httpsfv.UnmarshalList([]string{h})
	if err != nil || len(l) == 0 {
		return "", ""
	}
	item, ok := l[0].(httpsfv.Item)
	if !ok {
		return "", ""
	}
	if v, ok := item.Params.Get("error"); ok {
		if t, ok := v.(httpsfv.Token); ok {
			errType = string(t)
		}
	}
	if v, ok := item.Params.Get("details"); ok {
		details, _ = v.(string)
	}
	return errType, details
}
