package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Per client address: new connections per second and concurrent
// connections, enforced before the handshake completes. TCP carrier
// connections (tcpserve.go) are admitted at Accept and count in the same
// table; QUIC ones through the hooks of a quic.Transport
// (ConfigureTransport):
//
//   - ConnContext runs when quic-go accepts a connection attempt, before
//     the handshake: it refuses an address over either limit, or counts the
//     connection against it until the context quic-go gives it ends (the
//     connection closed, or its handshake failed).
//   - VerifySourceAddress runs first, for an Initial without a valid
//     token: it asks for a Retry (one round trip, proving the address is
//     not spoofed) when the address has spent half its burst, or when the
//     table is more than half full and the address is not in it. So a
//     spoofer can neither fill the table nor spend a real client's budget
//     once the proxy is under load.
//
// One addrLimiter is shared by every transport the proxy configures: the
// state per address is in one place. Addresses are keyed by IPv4 address
// or by IPv6 /64 (one host's usual share). The table holds at most
// addrTableMax entries; an entry with no connection and a full bucket is
// idle and is swept when the table is full (at most once per
// addrSweepEvery). A new address that finds the table full of live
// entries is refused. Everything here runs per connection attempt, never
// per datagram, so a mutex guards the table.

// Defaults for the per-address limits.
const (
	DefaultMaxConnsPerAddr = 256 // concurrent connections per client address
	DefaultNewConnsPerAddr = 50  // new connections per second per client address; the burst is twice that
	addrTableMax           = 1 << 16
	addrSweepEvery         = time.Second
)

// Errors a refused connection attempt is closed with (quic-go sends
// CONNECTION_REFUSED).
var (
	ErrAddrRate       = errors.New("masqroute: too many new connections from this address")
	ErrAddrConcurrent = errors.New("masqroute: too many connections from this address")
	ErrAddrTableFull  = errors.New("masqroute: too many client addresses")
)

type addrLimiter struct {
	maxConns int     // concurrent per address; 0: no limit
	rate     float64 // new per second per address; 0: no limit
	burst    float64 // bucket depth: 2 × rate
	tableMax int
	now      func() time.Time

	refusedRate, refusedConcurrent, refusedTable, retries atomic.Uint64

	mu        sync.Mutex // guards the fields below
	table     map[netip.Prefix]*addrEntry
	lastSweep time.Time
}

type addrEntry struct {
	conns  int       // live connections (handshaking or established)
	tokens float64   // new-connection tokens at last
	last   time.Time // when tokens was computed
}

// newAddrLimiter returns the limiter, or nil if neither limit is set.
func newAddrLimiter(maxConns int, rate float64) *addrLimiter {
	if maxConns <= 0 && rate <= 0 {
		return nil
	}
	return &addrLimiter{
		maxConns: max(maxConns, 0),
		rate:     max(rate, 0),
		burst:    2 * max(rate, 0),
		tableMax: addrTableMax,
		now:      time.Now,
		table:    make(map[netip.Prefix]*addrEntry),
	}
}

// addrKey is the table key of a client address: the IPv4 address, or the
// IPv6 /64.
func addrKey(a net.Addr) (netip.Prefix, bool) {
	var raw net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		raw = a.IP
	case *net.TCPAddr: // the TCP carriers' connections (tcpserve.go)
		raw = a.IP
	default:
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// refillLocked brings e's tokens up to now.
func (l *addrLimiter) refillLocked(e *addrEntry, now time.Time) {
	if l.rate == 0 {
		return
	}
	e.tokens = min(l.burst, e.tokens+l.rate*now.Sub(e.last).Seconds())
	e.last = now
}

// verifySource is the transport's VerifySourceAddress: whether to ask the
// address for a Retry first.
func (l *addrLimiter) verifySource(a net.Addr) bool {
	key, ok := addrKey(a)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.table[key]
	retry := false
	if e == nil {
		retry = len(l.table) > l.tableMax/2
	} else if l.rate > 0 {
		l.refillLocked(e, l.now())
		retry = e.tokens < l.burst/2
	}
	if retry {
		l.retries.Add(1)
	}
	return retry
}

// admit counts a connection attempt from a against the limits, or refuses
// it. release undoes the count once; call it when the connection ends.
func (l *addrLimiter) admit(a net.Addr) (release func(), err error) {
	key, ok := addrKey(a)
	if !ok {
		return func() {}, nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.table[key]
	if e == nil {
		if len(l.table) >= l.tableMax {
			l.sweepLocked(now)
		}
		if len(l.table) >= l.tableMax {
			l.refusedTable.Add(1)
			return nil, ErrAddrTableFull
		}
		e = &addrEntry{tokens: l.burst, last: now}
		l.table[key] = e
	}
	l.refillLocked(e, now)
	switch {
	case l.maxConns > 0 && e.conns >= l.maxConns:
		l.refusedConcurrent.Add(1)
		return nil, ErrAddrConcurrent
	case l.rate > 0 && e.tokens < 1:
		l.refusedRate.Add(1)
		return nil, ErrAddrRate
	}
	e.tokens--
	e.conns++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			e.conns--
			l.mu.Unlock()
		})
	}, nil
}

// sweepLocked drops idle entries: no connection, bucket full again. It
// runs at most once per addrSweepEvery, so that a table full of live
// entries does not cost a walk per attempt.
func (l *addrLimiter) sweepLocked(now time.Time) {
	if now.Sub(l.lastSweep) < addrSweepEvery {
		return
	}
	l.lastSweep = now
	for k, e := range l.table {
		l.refillLocked(e, now)
		if e.conns == 0 && e.tokens >= l.burst {
			delete(l.table, k)
		}
	}
}

// ConfigureTransport sets tr's VerifySourceAddress and ConnContext so that
// connections are limited before their handshake completes: per client
// address by Config.MaxConnsPerAddr and Config.NewConnsPerAddr
// (addrlimit.go), and in all by Config.MaxConns, handshakes under way
// counting. One over a limit is refused with CONNECTION_REFUSED and never
// costs the proxy a handshake. Handshakes count from their first Initial,
// so that spoofed Initials cannot hold every place while they time out,
// a client must answer a Retry (proving its address) once half of
// MaxConns is taken, as it must when the per-address table fills. Call it
// before tr.Listen; every transport configured shares the proxy's state.
// A ConnContext already set on tr runs after the limits. With every limit
// off it changes nothing.
func (p *Proxy) ConfigureTransport(tr *quic.Transport) {
	if p.addrs == nil && p.cfg.MaxConns <= 0 {
		return
	}
	tr.VerifySourceAddress = p.verifySource
	next := tr.ConnContext
	tr.ConnContext = func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
		release, err := p.admitQUIC(info.RemoteAddr)
		if err != nil {
			return nil, err
		}
		if next != nil {
			if ctx, err = next(ctx, info); err != nil {
				release()
				return nil, err
			}
		}
		context.AfterFunc(ctx, release) // the context ends with the connection, or with its failed handshake
		return ctx, nil
	}
}

// verifySource is a configured transport's VerifySourceAddress: a Retry
// once half of MaxConns is taken, or when the per-address limiter asks
// for one.
func (p *Proxy) verifySource(a net.Addr) bool {
	if maxConns := int64(p.cfg.MaxConns); maxConns > 0 && 2*p.quicAdmitted.Load() >= maxConns {
		p.counters.limitRetries.Add(1)
		return true
	}
	return p.addrs != nil && p.addrs.verifySource(a)
}

// errTooManyConns refuses a QUIC connection past Config.MaxConns.
var errTooManyConns = errors.New("masqroute: connection limit reached")

// admitQUIC admits a new QUIC connection from addr under the per-address
// limits and MaxConns, or says why not. release, called once, gives back
// what it took.
func (p *Proxy) admitQUIC(addr net.Addr) (release func(), err error) {
	releaseAddr := func() {}
	if p.addrs != nil {
		if releaseAddr, err = p.addrs.admit(addr); err != nil {
			return nil, err
		}
	}
	maxConns := int64(p.cfg.MaxConns)
	if maxConns <= 0 {
		return releaseAddr, nil
	}
	if p.quicAdmitted.Add(1) > maxConns {
		p.quicAdmitted.Add(-1)
		releaseAddr()
		p.counters.connsRejected.Add(1)
		return nil, errTooManyConns
	}
	return func() {
		p.quicAdmitted.Add(-1)
		releaseAddr()
	}, nil
}
