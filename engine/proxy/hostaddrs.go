package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// The host's own addresses. A target on the proxy's own host reaches
// services bound to 0.0.0.0 there (and the proxy's own QUIC port) from the
// inside, past any firewall in front of the host: the static policy cannot
// know them, so the proxy refuses them itself. The set is every address of
// the host's interfaces, read by New, again whenever Config.WatchHostAddrs
// says they changed (from the first Serve or ServeConn until Close), and by
// RefreshHostAddrs (the daemon calls it on SIGHUP); and the proxy's
// listening address and port. CONNECT-IP refuses the same addresses as
// destinations on a Device that leads into the host (connectip_host.go).
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
	_, err := p.refreshHostAddrs()
	return err
}

// refreshHostAddrs reads the host's addresses and reports whether they
// differ from the set before.
func (p *Proxy) refreshHostAddrs() (changed bool, err error) {
	// One refresh at a time: the watcher and SIGHUP may race, and an older
	// read must not replace a newer one.
	p.hostWatch.refresh.Lock()
	defer p.hostWatch.refresh.Unlock()
	addrs, err := p.cfg.HostAddrs()
	if err != nil {
		return false, err
	}
	h := &hostAddrs{addrs: make([]netip.Addr, 0, len(addrs))}
	for _, a := range addrs {
		h.addrs = append(h.addrs, a.Unmap().WithZone(""))
	}
	slices.SortFunc(h.addrs, netip.Addr.Compare)
	h.addrs = slices.Compact(h.addrs)
	old := p.host.Swap(h) // publish the new set whole
	return old == nil || !slices.Equal(old.addrs, h.addrs), nil
}

// hostWatcher runs Config.WatchHostAddrs. Its goroutine starts with the
// first Serve or ServeConn (a Proxy that never serves holds none) and Close
// ends it.
type hostWatcher struct {
	refresh sync.Mutex // serialises refreshHostAddrs

	// guarded by Proxy.mu
	cancel context.CancelFunc // nil until started
	done   chan struct{}      // closed when routineWatchHostAddrs has ended
}

// startHostWatchLocked starts the watch once. The caller holds p.mu and
// has checked that the proxy is not closed.
func (p *Proxy) startHostWatchLocked() {
	if p.cfg.WatchHostAddrs == nil || p.hostWatch.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.hostWatch.cancel, p.hostWatch.done = cancel, make(chan struct{})
	go p.routineWatchHostAddrs(ctx, p.hostWatch.done)
}

// stopHostWatch ends the watch and waits for its goroutine; idempotent.
func (p *Proxy) stopHostWatch() {
	p.mu.Lock()
	cancel, done := p.hostWatch.cancel, p.hostWatch.done
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (p *Proxy) routineWatchHostAddrs(ctx context.Context, done chan struct{}) {
	defer close(done)
	p.log.Debug("masqroute: watching the host's addresses")
	defer p.log.Debug("masqroute: stopped watching the host's addresses")
	p.hostAddrsChanged() // what changed between New and now
	err := p.cfg.WatchHostAddrs(ctx, p.hostAddrsChanged)
	if ctx.Err() == nil {
		p.log.Warn("masqroute: the host's addresses are no longer watched; only RefreshHostAddrs reads them", "err", err)
	}
}

// hostAddrsChanged reads the host's addresses after a change notification,
// and logs the new set if it differs.
func (p *Proxy) hostAddrsChanged() {
	changed, err := p.refreshHostAddrs()
	switch {
	case err != nil:
		p.log.Warn("masqroute: reading the host's addresses; the old set stays", "err", err)
	case changed:
		p.log.Info("host addresses refused as targets", "addrs", p.HostAddrs())
	}
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
