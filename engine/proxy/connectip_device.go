package proxy

import (
	"errors"
	"net"
	"sync/atomic"

	"github.com/masqroute/masqroute/engine/internal/ippkt"
)

// ipCounters are the proxy-wide CONNECT-IP counters; per-tunnel packet
// counts are in each tunnel's tunnelCounters.
type ipCounters struct {
	fromNetwork     atomic.Uint64 // packets read from the device
	noTunnel        atomic.Uint64 // ... for an address no tunnel has
	returnClosed    atomic.Uint64 // ... whose tunnel was closing
	networkBad      atomic.Uint64 // ... that did not parse
	icmpToClient    atomic.Uint64 // ICMP errors sent into tunnels
	icmpToNetwork   atomic.Uint64 // ICMP errors written to the device
	addressRequests atomic.Uint64 // ADDRESS_REQUEST capsules answered
	mtuAborts       atomic.Uint64 // tunnels aborted: no 1280-byte datagrams
}

// routineDeviceReceive is the one reader of the CONNECT-IP device: it finds
// each packet's tunnel by destination address (a wait-free shardmap
// lookup), checks it for the tunnel and queues it on the tunnel's
// connection's reply ring (a wait-free push; full: dropped and counted as
// return_queue_full). It never waits for a tunnel or a client.
func (n *ipNet) routineDeviceReceive() {
	defer close(n.done)
	log := n.p.log
	log.Debug("masqroute: CONNECT-IP device reader started")
	defer log.Debug("masqroute: CONNECT-IP device reader stopped")

	batch := n.dev.BatchSize()
	bufs := make([]*ipBuf, batch)
	views := make([][]byte, batch)
	sizes := make([]int, batch)
	mtu := n.dev.MTU()
	for i := range bufs {
		bufs[i] = n.bufs.get()
		views[i] = bufs[i].data[ipHeadroom : ipHeadroom+mtu]
	}
	defer func() {
		for _, b := range bufs {
			n.bufs.put(b)
		}
	}()
	var unreach icmpLimiter
	for {
		k, err := n.dev.ReadPackets(views, sizes)
		for i := range k {
			n.c.fromNetwork.Add(1)
			b := bufs[i]
			b.n = sizes[i]
			if !n.route(b, &unreach) {
				continue // b stays ours
			}
			bufs[i] = n.bufs.get() // b went to a tunnel
			views[i] = bufs[i].data[ipHeadroom : ipHeadroom+mtu]
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || n.closing.Load() {
				return
			}
			log.Warn("masqroute: CONNECT-IP device read failed", "error", err)
		}
	}
}

// route hands b to the tunnel owning its destination and reports whether it
// did.
func (n *ipNet) route(b *ipBuf, unreach *icmpLimiter) bool {
	pkt := b.packet()
	h, err := ippkt.Parse(pkt)
	if err != nil {
		n.c.networkBad.Add(1)
		return false
	}
	var t *ipTunnel
	if h.Version == 4 {
		if off, ok := n.pool4.Offset(h.Dst); ok {
			t = n.by4.Load(off)
		}
	} else if off, ok := n.pool6.Offset(h.Dst); ok {
		t = n.by6.Load(off)
	}
	if t == nil {
		n.c.noTunnel.Add(1)
		if unreach.allow() {
			from := n.pool4.Own()
			if h.Version == 6 {
				from = n.pool6.Own()
			}
			if reply, err := ippkt.DestinationUnreachable(pkt, from, ippkt.AddressUnreachable); err == nil {
				if _, err := n.dev.WritePackets([][]byte{reply}); err == nil {
					n.c.icmpToNetwork.Add(1)
				}
			}
		}
		return false
	}
	return t.returnPacket(b, h)
}
