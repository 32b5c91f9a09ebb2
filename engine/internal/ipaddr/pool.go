package ipaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrPoolExhausted: every address of a CONNECT-IP pool is assigned.
var ErrPoolExhausted = errors.New("masqroute: address pool exhausted")

// A Pool hands out single addresses (/32 or /128) from one prefix to
// CONNECT-IP tunnels. The first address of the prefix is the proxy's own
// (the source of the ICMP errors it sends into tunnels) and never assigned;
// for IPv4 the last (broadcast) one neither.
//
// Each address is keyed by its offset in the prefix, a uint64: the key of
// the return-path map that finds a tunnel from a packet's destination. So a
// pool holds at most 2^64 addresses: an IPv6 pool is a /64 or longer.
//
// Allocation is first-fit from a rotating cursor over a free set, under a
// mutex: it runs once per tunnel, never per packet.
type Pool struct {
	prefix netip.Prefix
	base   [16]byte // prefix address, 16-byte form
	size   uint64   // addresses in the prefix, capped
	is4    bool

	mu     sync.Mutex // guards the fields below
	used   map[uint64]struct{}
	cursor uint64
}

// maxPoolScan bounds how far one allocation looks for a free address, so a
// nearly full giant pool cannot stall the control path.
const maxPoolScan = 1 << 16

// NewPool returns an empty pool over p, which must hold at least four and at
// most 2^64 addresses.
func NewPool(p netip.Prefix) (*Pool, error) {
	if !p.IsValid() {
		return nil, errors.New("invalid prefix")
	}
	p = p.Masked()
	bits := p.Addr().BitLen()
	hostBits := bits - p.Bits()
	if hostBits > 64 {
		return nil, fmt.Errorf("%s: a pool holds at most 2^64 addresses (use a /64 or longer)", p)
	}
	if hostBits < 2 {
		return nil, fmt.Errorf("%s: too small for a pool", p)
	}
	size := uint64(1) << hostBits
	if hostBits == 64 {
		size = ^uint64(0) // the all-ones offset is never handed out
	}
	ap := &Pool{prefix: p, base: p.Addr().As16(), size: size, is4: p.Addr().Is4(), used: make(map[uint64]struct{}), cursor: 2}
	return ap, nil
}

// limit is one past the last offset a tunnel may get: the IPv4 broadcast
// address is kept out.
func (ap *Pool) limit() uint64 {
	if ap.is4 {
		return ap.size - 1
	}
	return ap.size
}

// Own is the proxy's address in the pool.
func (ap *Pool) Own() netip.Addr { return ap.addr(1) }

// addr returns the address at offset off.
func (ap *Pool) addr(off uint64) netip.Addr {
	b := ap.base
	for i := 15; i >= 0 && off > 0; i-- {
		sum := uint64(b[i]) + off&0xff
		b[i] = byte(sum)
		off = off>>8 + sum>>8
	}
	a := netip.AddrFrom16(b)
	if ap.is4 {
		return a.Unmap()
	}
	return a
}

// Offset returns a's offset in the pool, and whether a is in it.
func (ap *Pool) Offset(a netip.Addr) (uint64, bool) {
	if !ap.prefix.Contains(a) {
		return 0, false
	}
	b := a.As16()
	var off uint64
	for i := 8; i < 16; i++ {
		off = off<<8 | uint64(b[i]^ap.base[i])
	}
	return off, true
}

// Allocate hands out a free address.
func (ap *Pool) Allocate() (netip.Addr, uint64, error) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	limit := ap.limit()
	for range min(limit, maxPoolScan) {
		off := ap.cursor
		ap.cursor++
		if ap.cursor >= limit {
			ap.cursor = 2
		}
		if off < 2 || off >= limit {
			continue
		}
		if _, taken := ap.used[off]; taken {
			continue
		}
		ap.used[off] = struct{}{}
		return ap.addr(off), off, nil
	}
	return netip.Addr{}, 0, fmt.Errorf("%w: %s", ErrPoolExhausted, ap.prefix)
}

// Release gives an address back.
func (ap *Pool) Release(off uint64) {
	ap.mu.Lock()
	delete(ap.used, off)
	ap.mu.Unlock()
}

// InUse is the number of addresses handed out.
func (ap *Pool) InUse() int {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return len(ap.used)
}
