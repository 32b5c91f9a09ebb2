package proxy

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/ipaddr"
	"github.com/masqroute/masqroute/ringbuf"
	"github.com/masqroute/masqroute/shardmap"
)

// A packet from the network for a tunnel that is closing is counted as
// IPReturnClosed, not as a full return ring.
func TestRouteToClosingTunnel(t *testing.T) {
	pool4, err := ipaddr.NewPool(netip.MustParsePrefix("10.77.0.0/24"))
	require.NoError(t, err)
	pool6, err := ipaddr.NewPool(netip.MustParsePrefix("fd6d:7172::/64"))
	require.NoError(t, err)
	n := &ipNet{pool4: pool4, pool6: pool6, by4: shardmap.New[ipTunnel](), by6: shardmap.New[ipTunnel]()}
	addr, off, err := pool4.Allocate()
	require.NoError(t, err)
	tun := &ipTunnel{ret: ringbuf.New[*ipBuf](1)}
	n.by4.Store(off, tun)

	packet := func() *ipBuf {
		b := n.bufs.get()
		hdr := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 253, 0, 0, 192, 0, 2, 1}
		hdr = append(hdr, addr.AsSlice()...)
		var sum uint32
		for i := 0; i < len(hdr); i += 2 {
			sum += uint32(hdr[i])<<8 | uint32(hdr[i+1])
		}
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		hdr[10], hdr[11] = byte(^sum>>8), byte(^sum)
		b.n = copy(b.data[ipHeadroom:], hdr)
		return b
	}
	for i := 0; n.route(packet(), nil); i++ { // fill the return ring
		require.Less(t, i, tun.ret.Cap(), "bad %d", n.c.networkBad.Load())
	}
	require.Equal(t, uint64(1), n.c.returnFull.Load())
	tun.ret.Close()
	tun.ret.Drain(func(*ipBuf) {})
	require.False(t, n.route(packet(), nil))
	require.Equal(t, uint64(1), n.c.returnFull.Load())
	require.Equal(t, uint64(1), n.c.returnClosed.Load())
}

// A return-path buffer is one allocator size class, 2048 bytes, not a few
// bytes over it (which lands in the 2304-byte class).
func TestIPBufSize(t *testing.T) {
	require.Equal(t, uintptr(2048), unsafe.Sizeof(ipBuf{}))
	var p ipBufPool
	b := p.get()
	p.put(b)
	require.Panics(t, func() { p.put(b) }, "double put")
}
