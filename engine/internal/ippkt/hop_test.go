package ippkt

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecrementHopLimitIPv4(t *testing.T) {
	pkt := v4pkt(v4opts{ttl: 64, proto: ProtoUDP, payload: udpSeg(1, 2, []byte("x"))})
	require.True(t, DecrementHopLimit(pkt))
	h, err := Parse(pkt)
	require.NoError(t, err, "checksum still valid")
	require.Equal(t, uint8(63), h.HopLimit)

	// Against a full recomputation, over random headers (options, IDs,
	// addresses, protocols and TTLs), TTL by TTL down to 1.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		opts := make([]byte, 4*rng.IntN(11))
		for i := range opts {
			opts[i] = byte(rng.Uint32())
		}
		var s, d [4]byte
		binary.BigEndian.PutUint32(s[:], rng.Uint32())
		binary.BigEndian.PutUint32(d[:], rng.Uint32())
		pkt := v4pkt(v4opts{
			src: netip.AddrFrom4(s), dst: netip.AddrFrom4(d),
			ttl: byte(rng.IntN(255) + 1), proto: byte(rng.Uint32()),
			options: opts, flagsFrag: uint16(rng.Uint32()), payload: repeat(rng.IntN(5)),
		})
		binary.BigEndian.PutUint16(pkt[4:], uint16(rng.Uint32()))
		fixV4Checksum(pkt)
		for ttl := int(pkt[8]); ttl > 1; ttl-- {
			require.True(t, DecrementHopLimit(pkt))
			got := binary.BigEndian.Uint16(pkt[10:])
			fixV4Checksum(pkt)
			require.Equal(t, binary.BigEndian.Uint16(pkt[10:]), got, "ttl %d", ttl)
		}
		before := bytes.Clone(pkt)
		require.False(t, DecrementHopLimit(pkt))
		require.Equal(t, before, pkt)
	}
}

func TestDecrementHopLimitIPv4EdgeChecksums(t *testing.T) {
	// Find headers whose checksum is 0x0000, or 0xffff after the update,
	// where an incremental update following RFC 1071 rather than RFC 1624
	// goes wrong.
	var hit0, hitF bool
	for id := 0; id < 1<<16 && !(hit0 && hitF); id++ {
		pkt := v4pkt(v4opts{ttl: 2, proto: ProtoUDP, payload: nil})
		binary.BigEndian.PutUint16(pkt[4:], uint16(id))
		fixV4Checksum(pkt)
		cs := binary.BigEndian.Uint16(pkt[10:])
		require.True(t, DecrementHopLimit(pkt))
		got := binary.BigEndian.Uint16(pkt[10:])
		fixV4Checksum(pkt)
		require.Equal(t, binary.BigEndian.Uint16(pkt[10:]), got, "id %#x", id)
		hit0 = hit0 || cs == 0
		hitF = hitF || got == 0
	}
	require.True(t, hit0 || hitF, "an edge case was covered")
}

func TestDecrementHopLimitIPv6(t *testing.T) {
	pkt := v6pkt(v6opts{hop: 2, proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	require.True(t, DecrementHopLimit(pkt))
	require.Equal(t, byte(1), pkt[7])
	before := bytes.Clone(pkt)
	require.False(t, DecrementHopLimit(pkt))
	require.Equal(t, before, pkt)
}

func TestDecrementHopLimitRefuses(t *testing.T) {
	v4ttl1 := v4pkt(v4opts{ttl: 1, proto: ProtoUDP})
	v4ttl0 := v4pkt(v4opts{proto: ProtoUDP})
	v4ttl0[8] = 0
	fixV4Checksum(v4ttl0)
	v6hop0 := v6pkt(v6opts{proto: ProtoUDP})
	v6hop0[7] = 0
	for name, pkt := range map[string][]byte{
		"empty":       {},
		"v4 short":    v4pkt(v4opts{ttl: 9})[:19],
		"v6 short":    v6pkt(v6opts{hop: 9})[:39],
		"version 5":   append([]byte{0x55}, make([]byte, 60)...),
		"v4 ttl 1":    v4ttl1,
		"v4 ttl 0":    v4ttl0,
		"v6 hop 1":    v6pkt(v6opts{hop: 1, proto: ProtoUDP}),
		"v6 hop 0":    v6hop0,
		"v4 in 40 b":  append([]byte{0x45}, make([]byte, 39)...), // TTL 0
		"v6 in 20 b":  append([]byte{0x60}, make([]byte, 19)...),
		"v6 ttl-like": append([]byte{0x60, 0, 0, 0, 0, 0, 0, 9}, make([]byte, 12)...),
	} {
		before := bytes.Clone(pkt)
		require.False(t, DecrementHopLimit(pkt), name)
		require.Equal(t, before, pkt, name)
	}
}

func TestIsLinkLocal(t *testing.T) {
	for a, want := range map[string]bool{
		"169.254.0.1":          true,
		"169.254.255.255":      true,
		"169.253.255.255":      false,
		"169.255.0.0":          false,
		"224.0.0.1":            true,
		"224.0.0.255":          true,
		"224.0.1.1":            false,
		"239.255.255.250":      false,
		"255.255.255.255":      true,
		"255.255.255.254":      false,
		"10.0.0.1":             false,
		"127.0.0.1":            false,
		"0.0.0.0":              false,
		"fe80::1":              true,
		"fe80::1%eth0":         true,
		"febf:ffff::1":         true,
		"fec0::1":              false,
		"fe7f::1":              false,
		"ff02::1":              true,
		"ff02::1:ff00:1":       true,
		"ff12::1":              true, // transient, link scope
		"ff32::1":              true,
		"ff01::1":              true, // interface-local
		"ff00::1":              true, // reserved scope 0
		"ff05::2":              false,
		"ff0e::1":              false,
		"ff1e::1":              false,
		"2001:db8::1":          false,
		"::1":                  false,
		"::":                   false,
		"::ffff:169.254.1.1":   true,
		"::ffff:224.0.0.251":   true,
		"::ffff:192.0.2.1":     false,
		"64:ff9b::169.254.1.1": false,
	} {
		require.Equal(t, want, IsLinkLocal(netip.MustParseAddr(a)), a)
	}
	require.False(t, IsLinkLocal(netip.Addr{}))
}

func TestHopAllocs(t *testing.T) {
	v4 := v4pkt(v4opts{ttl: 255, proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	v6 := v6pkt(v6opts{hop: 255, proto: ProtoUDP, payload: udpSeg(1, 2, nil)})
	require.Zero(t, testing.AllocsPerRun(100, func() { DecrementHopLimit(v4) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { DecrementHopLimit(v6) }))
	addrs := []netip.Addr{src4, src6, netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:169.254.1.1")}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			IsLinkLocal(a)
		}
	}))
}

func BenchmarkDecrementHopLimit(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4", v4pkt(v4opts{ttl: 255, proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1200))})},
		{"ipv6", v6pkt(v6opts{hop: 255, proto: ProtoUDP, payload: udpSeg(1, 2, repeat(1200))})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !DecrementHopLimit(bc.pkt) {
					// Reset: a packet is decremented once per hop, not
					// 254 times, but the cost is the same.
					if bc.pkt[0]>>4 == 4 {
						bc.pkt[8] = 255
						fixV4Checksum(bc.pkt)
					} else {
						bc.pkt[7] = 255
					}
				}
			}
		})
	}
}

func BenchmarkIsLinkLocal(b *testing.B) {
	addrs := []netip.Addr{src4, dst6, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("224.0.0.1")}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, a := range addrs {
			if IsLinkLocal(a) {
				n++
			}
		}
	}
	b.ReportMetric(float64(len(addrs)), "addrs/op")
}
