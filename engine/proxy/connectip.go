package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/internal/bufpool"
	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/engine/internal/template"
	"github.com/masqroute/masqroute/engine/packetio"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/shardmap"
)

// CONNECT-IP (RFC 9484): the second session kind. Its pipeline:
//
//	client → network (sequential per tunnel, the session goroutine):
//	    ring batch → ipTunnel.HandleDatagrams → source/scope/hop-limit checks → Device.WritePackets
//	network → client (one reader per proxy, then the connection's sender):
//	    Device.ReadPackets → routineDeviceReceive: destination → tunnel (shardmap, wait-free)
//	    → returnPacket: scope and hop-limit checks, header written into the headroom
//	    → the connection's reply ring (wait-free push) → its sender: SendDatagram
//
// No goroutine belongs to a tunnel. The device reader every tunnel shares
// never waits: a client whose QUIC send queue is full stalls only its own
// connection's sender, whose ring then fills and drops (sender.go).

// DefaultIPTemplate is RFC 9484's default template, with the proxy's own
// authority. Both variables are optional.
const DefaultIPTemplate = "https://{authority}/.well-known/masque/ip/{target}/{ipproto}/"

// DefaultIPTemplateNoVars is served beside DefaultIPTemplate by default:
// clients that send no scope (connect-ip-go's) use it, and get target "*"
// and ipproto "*".
const DefaultIPTemplateNoVars = "https://{authority}/.well-known/masque/ip/"

// Default CONNECT-IP address pools: a tunnel gets one address of each.
var (
	DefaultIPPool4 = netip.MustParsePrefix("10.77.0.0/16")
	DefaultIPPool6 = netip.MustParsePrefix("fd6d:7172::/64")
)

// ErrPoolExhausted: every address of a CONNECT-IP pool is assigned. A
// request that finds a pool exhausted is answered 503.
var ErrPoolExhausted = ipaddr.ErrPoolExhausted

// DefaultIPReturnQueue was each CONNECT-IP tunnel's return ring, in packets.
//
// Deprecated: tunnels have no return ring any more; packets from the
// network queue on their connection's reply ring, shared with CONNECT-UDP.
const DefaultIPReturnQueue = 256

// IPConfig enables CONNECT-IP on a Proxy.
type IPConfig struct {
	// Device is the network behind the proxy: a userspace network, a TUN
	// interface, anything that carries IP packets (see engine/packetio).
	// The Proxy owns it from New on and closes it in Close.
	Device packetio.Device
	// Templates are the URI templates CONNECT-IP requests may match. Each
	// uses the variables target and ipproto (both optional, RFC 9484 §4.6)
	// or none at all, which means target "*" and ipproto "*" (connect-ip-go's
	// client only sends such). Default: DefaultIPTemplate and
	// DefaultIPTemplateNoVars.
	Templates []string
	// Pool4 and Pool6 are the client address pools; each tunnel is
	// assigned one address of each, unasked (RFC 9484 §4.7.1). Pool6 must
	// be a /64 or longer. Defaults DefaultIPPool4 and DefaultIPPool6.
	Pool4, Pool6 netip.Prefix
	// Reachable are the networks behind Device that tunnels may reach; a
	// request's scope is cut down to them and the result is what the proxy
	// advertises and enforces. Default: every address outside
	// policy.InternalPrefixes (no loopback, private, link-local, ...).
	Reachable []netip.Prefix
	// Allow adds networks to the default Reachable (ignored where
	// Reachable is set); Deny takes networks out of Reachable, whatever
	// it is. The daemon passes its -allow and -deny.
	//
	// On a Device that is not a packetio.IsolatedDevice (a TUN interface)
	// the host's own addresses (Config.HostAddrs) are refused as
	// destinations, whatever Reachable says, except those an Allow prefix
	// holds (connectip_host.go).
	Allow, Deny []netip.Prefix
	// ReturnQueue is ignored.
	//
	// Deprecated: tunnels have no return ring any more; packets from the
	// network queue on their connection's reply ring (512 replies, shared
	// with the connection's other tunnels).
	ReturnQueue int
}

// ipNet is a proxy's CONNECT-IP state.
type ipNet struct {
	p            *Proxy
	dev          packetio.Device
	tmpls        []*template.Template
	pool4, pool6 *ipaddr.Pool
	reach        []netip.Prefix // without the host's addresses: see reachable
	allow        []netip.Prefix // IPConfig.Allow: host addresses spared (connectip_host.go)
	hostNet      bool           // dev leads into the host: refuse its addresses

	// by4 and by6 find the tunnel of an assigned address by its offset in
	// its pool. Written when tunnels start and end, read by
	// routineDeviceReceive for every packet.
	by4, by6 *shardmap.Map[ipTunnel]

	bufs    ipBufPool
	c       ipCounters
	done    chan struct{} // closed when routineDeviceReceive has ended
	closing atomic.Bool
}

func newIPNet(p *Proxy, cfg IPConfig) (*ipNet, error) {
	if cfg.Device == nil {
		return nil, errors.New("CONNECT-IP needs a Device")
	}
	if mtu := cfg.Device.MTU(); mtu < 1280 || mtu > ipBufSize-ipHeadroom {
		return nil, fmt.Errorf("device MTU %d outside 1280..%d", mtu, ipBufSize-ipHeadroom)
	}
	if len(cfg.Templates) == 0 {
		cfg.Templates = []string{DefaultIPTemplate, DefaultIPTemplateNoVars}
	}
	if !cfg.Pool4.IsValid() {
		cfg.Pool4 = DefaultIPPool4
	}
	if !cfg.Pool6.IsValid() {
		cfg.Pool6 = DefaultIPPool6
	}
	n := &ipNet{p: p, dev: cfg.Device, done: make(chan struct{}),
		by4: shardmap.New[ipTunnel](), by6: shardmap.New[ipTunnel]()}
	for _, raw := range cfg.Templates {
		t, err := template.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("IP template %q: %w", raw, err)
		}
		for _, v := range t.Varnames() {
			if v != "target" && v != "ipproto" && v != "authority" {
				return nil, fmt.Errorf("IP template %q: unknown variable %q", raw, v)
			}
		}
		n.tmpls = append(n.tmpls, t)
	}
	var err error
	if !cfg.Pool4.Addr().Is4() || !cfg.Pool6.Addr().Is6() {
		return nil, errors.New("Pool4 must be IPv4 and Pool6 IPv6")
	}
	if n.pool4, err = ipaddr.NewPool(cfg.Pool4); err != nil {
		return nil, err
	}
	if n.pool6, err = ipaddr.NewPool(cfg.Pool6); err != nil {
		return nil, err
	}
	n.reach = cfg.Reachable
	if n.reach == nil {
		n.reach = append(ipaddr.Complement(policy.InternalPrefixes()), cfg.Allow...)
	}
	n.reach = ipaddr.Subtract(n.reach, cfg.Deny)
	n.allow, n.hostNet = cfg.Allow, leadsIntoHost(cfg.Device)
	go n.routineDeviceReceive()
	return n, nil
}

// close stops the device reader and closes the device.
func (n *ipNet) close() {
	if n.closing.Swap(true) {
		<-n.done
		return
	}
	n.dev.Close()
	<-n.done
}

// matchRequest is the CONNECT-IP kind's matcher: one of IPConfig.Templates.
// Its Vars are target and ipproto ("*" when the template has no such
// variable).
func (n *ipNet) matchRequest(req *Request) error {
	target, ipproto, ok := n.match(requestURI(req.HTTP))
	if !ok {
		return errPathMismatch
	}
	req.ipScope = &ipScopeRequest{target: target, ipproto: ipproto}
	req.Vars = map[string]string{"target": target, "ipproto": ipproto}
	return nil
}

// match finds the template a request matches and returns target and
// ipproto ("*" when the template has no such variable).
func (n *ipNet) match(uri string) (target, ipproto string, ok bool) {
	for _, t := range n.tmpls {
		vars, ok := t.Match(uri)
		if !ok {
			continue
		}
		target, ipproto = "*", "*"
		if v, ok := vars["target"]; ok && v != "" {
			target = v
		}
		if v, ok := vars["ipproto"]; ok && v != "" {
			ipproto = v
		}
		return target, ipproto, true
	}
	return "", "", false
}

// ipKind starts CONNECT-IP tunnels.
type ipKind struct{ n *ipNet }

func (k *ipKind) Start(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
	req, err := startRequest(args, engine.ProtocolConnectIP, func(r *Request) bool { return r.ipScope != nil })
	if err != nil {
		return nil, err
	}
	n := k.n
	scope, err := n.p.parseIPScope(ctx, req.ipScope.target, req.ipScope.ipproto, n.reachable())
	if err != nil {
		if errors.Is(err, ErrBadScope) {
			return nil, &StatusError{Status: http.StatusBadRequest, ProxyError: proxyErrHTTPRequestError,
				Details: err.Error(), Err: err}
		}
		return nil, err
	}
	t, err := n.newTunnel(s, req, req.conn.sender, scope)
	if err != nil {
		return nil, &StatusError{Status: http.StatusServiceUnavailable, ProxyError: proxyErrHTTPRequestDenied,
			Details: "address pool exhausted", Err: err}
	}
	if n.p.cfg.IdleTimeout > 0 {
		t.idle = time.AfterFunc(n.p.cfg.IdleTimeout, t.checkIdle)
	}
	return t, nil
}

// newTunnel makes the tunnel of session s, whose replies go through snd:
// it assigns an address of each pool and publishes the tunnel under them.
func (n *ipNet) newTunnel(s *engine.Session, req *Request, snd *sender, scope *ipaddr.Scope) (*ipTunnel, error) {
	t := &ipTunnel{n: n, s: s, req: req, snd: snd, scope: scope}
	t.rate = newRateLimits(n.p.cfg.RateTunnelDatagrams, n.p.cfg.RateTunnelBytes, n.p.cfg.RateBurst)
	if req.conn != nil {
		t.amp, t.connRate = req.conn.amp, req.conn.rate
	}
	var err error
	if t.addr4, t.off4, err = n.pool4.Allocate(); err == nil {
		t.addr6, t.off6, err = n.pool6.Allocate()
		if err != nil {
			n.pool4.Release(t.off4)
		}
	}
	if err != nil {
		return nil, err
	}
	t.openBook(n.p)
	n.by4.Store(t.off4, t) // publish: return traffic for the address reaches t from now on
	n.by6.Store(t.off6, t)
	return t, nil
}

// ipScopeRequest is what serveMASQUE extracted from the template.
type ipScopeRequest struct{ target, ipproto string }

// ipBuf is one packet buffer of the return path, with headroom for the
// HTTP Datagram header. It is exactly 2048 bytes, an allocator size class
// (a test checks it): the device's MTU must fit in ipBufSize-ipHeadroom.
type ipBuf struct {
	data [ipBufSize]byte
	n    int // packet length, at data[ipHeadroom:]
	bufpool.Flag
	_ [7]byte
}

const (
	ipHeadroom = 16
	ipBufSize  = 2048 - 16 // n and the pool's flag take the rest
)

func (b *ipBuf) packet() []byte { return b.data[ipHeadroom : ipHeadroom+b.n] }

// ipBufPool pools return-path buffers; get and put do not allocate once
// warm, and a buffer put twice panics.
type ipBufPool struct{ p bufpool.Pool[ipBuf, *ipBuf] }

func (bp *ipBufPool) get() *ipBuf { return bp.p.Get() }

func (bp *ipBufPool) put(b *ipBuf) { b.n = 0; bp.p.Put(b) }
