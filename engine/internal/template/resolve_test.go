package template

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeResolver answers from a map; a name mapped to nil blocks until the
// lookup's context ends.
type fakeResolver struct {
	answers map[string][]netip.Addr
	errs    map[string]error
	lookups []string
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.lookups = append(f.lookups, network+" "+host)
	if err, ok := f.errs[host]; ok {
		return nil, err
	}
	addrs, ok := f.answers[host]
	if ok && addrs == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return addrs, nil
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// public refuses the ranges a policy would; enough for these tests.
func public(a netip.Addr) bool { return !a.IsLoopback() && !a.IsPrivate() }

func TestResolveLiteral(t *testing.T) {
	r := &fakeResolver{}
	for host, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1:53",
		"::ffff:192.0.2.1":   "192.0.2.1:53",
		"[2001:db8::1]":      "[2001:db8::1]:53",
		"3221225985":         "192.0.2.1:53",
		"::ffff:0xc0000201":  "",
		"::ffff:192.0.2.1.1": "",
	} {
		tg, err := ParseHostPort(host, "53")
		if want == "" {
			require.ErrorIs(t, err, ErrBadHost, host)
			continue
		}
		require.NoError(t, err, host)
		ap, err := Resolve(t.Context(), r, tg, time.Second, public)
		require.NoError(t, err)
		require.Equal(t, want, ap.String())
	}
	for _, host := range []string{"127.0.0.1", "::ffff:127.0.0.1", "2130706433", "0x7f.1", "10.1"} {
		tg, err := ParseHostPort(host, "53")
		require.NoError(t, err)
		_, err = Resolve(t.Context(), r, tg, time.Second, public)
		require.ErrorIs(t, err, ErrNoAllowedAddress, host)
	}
	require.Empty(t, r.lookups, "an IP literal must never reach the resolver")
}

func TestResolveName(t *testing.T) {
	r := &fakeResolver{
		answers: map[string][]netip.Addr{
			"mixed.example":   addrs("127.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "192.0.2.7", "2001:db8::7"),
			"private.example": addrs("10.0.0.1", "::1"),
			"empty.example":   {},
			"v6.example":      addrs("2001:db8::1"),
		},
		errs: map[string]error{
			"nx.example":   &net.DNSError{Err: "no such host", Name: "nx.example", IsNotFound: true},
			"slow.example": &net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true},
		},
	}
	resolve := func(name string, pick func(netip.Addr) bool) (netip.AddrPort, error) {
		return Resolve(t.Context(), r, Target{Name: name, Port: 443}, time.Second, pick)
	}

	var seen []netip.Addr
	ap, err := resolve("mixed.example", func(a netip.Addr) bool {
		seen = append(seen, a)
		return public(a) && a.Is4()
	})
	require.NoError(t, err)
	require.Equal(t, "192.0.2.7:443", ap.String())
	require.Equal(t, addrs("127.0.0.1", "10.0.0.1", "fe80::1", "192.0.2.7"), seen,
		"pick sees unmapped, zone-less addresses in resolver order and stops at the first accepted")

	ap, err = resolve("v6.example", nil)
	require.NoError(t, err)
	require.Equal(t, "[2001:db8::1]:443", ap.String())

	_, err = resolve("private.example", public)
	require.ErrorIs(t, err, ErrNoAllowedAddress)

	_, err = resolve("empty.example", public)
	require.ErrorIs(t, err, ErrDNS)
	require.NotErrorIs(t, err, ErrDNSTimeout)

	_, err = resolve("nx.example", public)
	require.ErrorIs(t, err, ErrDNS)
	require.NotErrorIs(t, err, ErrDNSTimeout)
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	require.True(t, dnsErr.IsNotFound)

	_, err = resolve("slow.example", public)
	require.ErrorIs(t, err, ErrDNSTimeout)
	require.ErrorIs(t, err, ErrDNS)

	require.Equal(t, "ip mixed.example", r.lookups[0])
}

func TestResolveTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeResolver{answers: map[string][]netip.Addr{"hang.example": nil}}
		start := time.Now()
		_, err := Resolve(t.Context(), r, Target{Name: "hang.example", Port: 53}, 3*time.Second, nil)
		require.ErrorIs(t, err, ErrDNSTimeout)
		require.ErrorIs(t, err, ErrDNS)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 3*time.Second, time.Since(start))
	})
}

func TestResolveCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeResolver{answers: map[string][]netip.Addr{"hang.example": nil}}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		_, err := Resolve(ctx, r, Target{Name: "hang.example", Port: 53}, time.Minute, nil)
		require.ErrorIs(t, err, ErrDNS)
		require.NotErrorIs(t, err, ErrDNSTimeout, "the caller gave up; the lookup did not time out")
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestResolveNoTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeResolver{answers: map[string][]netip.Addr{"hang.example": nil}}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		start := time.Now()
		_, err := Resolve(ctx, r, Target{Name: "hang.example", Port: 53}, 0, nil)
		require.Equal(t, time.Hour, time.Since(start), "timeout <= 0 leaves only ctx's deadline")
		require.True(t, errors.Is(err, ErrDNS))
	})
}
