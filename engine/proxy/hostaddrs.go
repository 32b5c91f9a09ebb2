package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
)

// The host's own addresses. A target on the proxy's own host reaches
// services bound to 0.0.0.0 there (and the proxy's own QUIC port) from the
// inside, past any firewall in front of the host: the static policy cannot
// know them, so the proxy refuses them itself. The set is every address of
// the host's interfaces, read by New and again by RefreshHostAddrs (the
// daemon calls it on SIGHUP), and the proxy's listening address and port.
// Loopback addresses are left to the policy, which refuses them unless told
// otherwise. An address an -allow rule names explicitly (see policy.ExplicitlyAllowed)
// is allowed anyway; the proxy's own listening port never is.

// hostAddrs is one snapshot of the host's addresses; it is replaced whole.
type hostAddrs struct {
	addrs []netip.Addr // sorted, unmapped, without zones
}

// InterfaceAddrs returns every address of the host's interfaces: the
// default Config.HostAddrs.
func InterfaceAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, ia := range ifAddrs {
		if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, pfx.Addr())
		}
	}
	return out, nil
}

// RefreshHostAddrs reads the host's addresses again (Config.HostAddrs);
// on error the old set stays.
func (p *Proxy) RefreshHostAddrs() error {
	addrs, err := p.cfg.HostAddrs()
	if err != nil {
		return err
	}
	h := &hostAddrs{addrs: make([]netip.Addr, 0, len(addrs))}
	for _, a := range addrs {
		h.addrs = append(h.addrs, a.Unmap().WithZone(""))
	}
	slices.SortFunc(h.addrs, netip.Addr.Compare)
	h.addrs = slices.Compact(h.addrs)
	p.host.Store(h) // publish the new set whole
	return nil
}

// HostAddrs returns the host addresses the proxy refuses now.
func (p *Proxy) HostAddrs() []netip.Addr { return slices.Clone(p.host.Load().addrs) }

// errOwnHost refuses a target on the proxy's own host.
var errOwnHost = errors.New("the proxy's own host")

// checkHost refuses the proxy's own listening address and port, and any
// address of its host unless the policy names it explicitly.
func (p *Proxy) checkHost(ap netip.AddrPort) error {
	a := ap.Addr().Unmap().WithZone("")
	for _, l := range *p.listenAddrs.Load() {
		self := l.Addr().Unmap() == a ||
			(l.Addr().IsUnspecified() && (a.IsLoopback() || p.isHostAddr(a))) // 0.0.0.0 / [::]: every address of the host
		if ap.Port() == l.Port() && self {
			return &StatusError{Status: http.StatusForbidden, ProxyError: proxyErrDestIPProhibited,
				Details: "the proxy itself", Err: errOwnHost}
		}
	}
	if a.IsLoopback() || !p.isHostAddr(a) {
		return nil // loopback is the policy's to refuse (and -dev's to allow)
	}
	if ea, ok := p.cfg.Policy.(interface{ ExplicitlyAllowed(netip.Addr) bool }); ok && ea.ExplicitlyAllowed(a) {
		return nil
	}
	return &StatusError{Status: http.StatusForbidden, ProxyError: proxyErrDestIPProhibited,
		Details: "an address of the proxy's own host", Err: errOwnHost}
}

func (p *Proxy) isHostAddr(a netip.Addr) bool {
	_, found := slices.BinarySearchFunc(p.host.Load().addrs, a, netip.Addr.Compare)
	return found
}

// addListenAddr records a listener's address for checkHost.
func (p *Proxy) addListenAddr(addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	ap := ua.AddrPort()
	for {
		old := p.listenAddrs.Load()
		next := append(slices.Clone(*old), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		if p.listenAddrs.CompareAndSwap(old, &next) {
			return
		}
	}
}

// listenSet is the type of Proxy.listenAddrs.
type listenSet = atomic.Pointer[[]netip.AddrPort]
