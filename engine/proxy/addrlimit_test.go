package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func udpAddr(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// The per-address limits: new connections per second (burst twice that),
// concurrent connections, a Retry past half the burst, and IPv6 keyed by
// /64.
func TestAddrLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAddrLimiter(3, 2) // 3 at once; 2/s, burst 4
	l.now = func() time.Time { return now }
	a := udpAddr("192.0.2.1:1000")

	require.False(t, l.verifySource(a), "unknown address, table empty: no Retry")
	r1, err := l.admit(a)
	require.NoError(t, err)
	r2, err := l.admit(udpAddr("192.0.2.1:2000")) // same address, other port
	require.NoError(t, err)
	require.False(t, l.verifySource(a), "2 of 4 tokens left")
	r3, err := l.admit(a)
	require.NoError(t, err)
	require.True(t, l.verifySource(a), "past half the burst: Retry")
	_, err = l.admit(a)
	require.ErrorIs(t, err, ErrAddrConcurrent)
	r3()
	r3() // idempotent
	_, err = l.admit(a)
	require.NoError(t, err, "one released: room again")
	r1()
	_, err = l.admit(a)
	require.ErrorIs(t, err, ErrAddrRate, "4 tokens spent")
	now = now.Add(500 * time.Millisecond) // one token back
	_, err = l.admit(a)
	require.NoError(t, err)
	r2()
	require.EqualValues(t, 1, l.refusedRate.Load())
	require.EqualValues(t, 1, l.refusedConcurrent.Load())
	require.EqualValues(t, 1, l.retries.Load())

	_, err = l.admit(udpAddr("192.0.2.2:1"))
	require.NoError(t, err, "another address has its own budget")

	// IPv6: one /64 is one client.
	for i := range 3 {
		_, err = l.admit(udpAddr("[2001:db8::" + strconv.Itoa(i+1) + "]:1"))
		require.NoError(t, err)
	}
	_, err = l.admit(udpAddr("[2001:db8::ffff:1]:1"))
	require.ErrorIs(t, err, ErrAddrConcurrent, "same /64")
	_, err = l.admit(udpAddr("[2001:db8:0:1::1]:1"))
	require.NoError(t, err, "another /64")
}

// The table is bounded: a new address finds it full of live entries and
// is refused; idle entries (no connection, bucket full again) are swept.
func TestAddrLimiterTableBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAddrLimiter(10, 1)
	l.now = func() time.Time { return now }
	l.tableMax = 4
	var releases []func()
	for i := range 4 {
		r, err := l.admit(udpAddr("192.0.2." + strconv.Itoa(i+1) + ":1"))
		require.NoError(t, err)
		releases = append(releases, r)
	}
	require.True(t, l.verifySource(udpAddr("198.51.100.1:1")), "table over half full: unknown addresses Retry first")
	_, err := l.admit(udpAddr("198.51.100.1:1"))
	require.ErrorIs(t, err, ErrAddrTableFull)
	for _, r := range releases {
		r()
	}
	now = now.Add(5 * time.Second) // buckets full again: idle
	_, err = l.admit(udpAddr("198.51.100.1:1"))
	require.NoError(t, err, "idle entries swept")
	require.Len(t, l.table, 1)
	require.EqualValues(t, 1, l.refusedTable.Load())
	require.Nil(t, newAddrLimiter(-1, -1))
}
