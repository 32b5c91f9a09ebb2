package proxy

import (
	"net/netip"

	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/engine/packetio"
)

// CONNECT-IP and the host's own addresses. Through a Device that leads into
// the host (a TUN interface: anything not packetio.IsolatedDevice), a
// packet for one of the host's addresses is delivered locally, to services
// bound to 0.0.0.0 and to the proxy's own QUIC port, past any firewall in
// front of the host. So the host's addresses (hostaddrs.go) are cut out of
// every new tunnel's scope, and thus out of the routes it advertises; an
// address that became the host's after a tunnel started is refused per
// packet, counted as drop_scope and answered with ICMP "administratively
// prohibited" like any destination outside the scope. An address that one
// of IPConfig.Allow's prefixes holds (the daemon's -allow) is spared, one
// address at a time, as for CONNECT-UDP.

// leadsIntoHost reports whether dev's network is the host's own.
func leadsIntoHost(dev packetio.Device) bool {
	iso, ok := dev.(packetio.IsolatedDevice)
	return !ok || !iso.Isolated()
}

// reachable is the reachable set for a new tunnel: n.reach without the
// host's addresses that Allow does not name, read now.
func (n *ipNet) reachable() []netip.Prefix {
	if !n.hostNet {
		return n.reach
	}
	var own []netip.Prefix
	for _, a := range n.p.host.Load().addrs {
		if !n.allowsHost(a) {
			own = append(own, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(own) == 0 {
		return n.reach
	}
	return ipaddr.Subtract(n.reach, own)
}

// refusesHost reports whether a client's packet to dst must be refused as
// one for the host itself. It is on the data path: one atomic load and a
// binary search over the host's addresses, no allocation.
func (n *ipNet) refusesHost(dst netip.Addr) bool {
	if !n.hostNet {
		return false
	}
	dst = dst.Unmap()
	return n.p.isHostAddr(dst) && !n.allowsHost(dst)
}

// allowsHost reports whether an Allow prefix holds the host address a.
func (n *ipNet) allowsHost(a netip.Addr) bool {
	for _, pfx := range n.allow {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}
