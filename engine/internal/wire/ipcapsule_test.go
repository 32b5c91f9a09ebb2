package wire

import (
	"bytes"
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// addr4 and addr6 encode one address entry (RFC 9484 §4.7.1) by hand, with
// the Request ID as given, so tests do not depend on the encoder.
func addr4(id []byte, a string, bits byte) []byte {
	ip := netip.MustParseAddr(a).As4()
	return cat(id, []byte{4}, ip[:], []byte{bits})
}

func addr6(id []byte, a string, bits byte) []byte {
	ip := netip.MustParseAddr(a).As16()
	return cat(id, []byte{6}, ip[:], []byte{bits})
}

// range4 and range6 encode one IP Address Range (RFC 9484 §4.7.3) by hand.
func range4(start, end string, proto byte) []byte {
	s, e := netip.MustParseAddr(start).As4(), netip.MustParseAddr(end).As4()
	return cat([]byte{4}, s[:], e[:], []byte{proto})
}

func range6(start, end string, proto byte) []byte {
	s, e := netip.MustParseAddr(start).As16(), netip.MustParseAddr(end).As16()
	return cat([]byte{6}, s[:], e[:], []byte{proto})
}

func route(start, end string, proto uint8) IPRoute {
	return IPRoute{Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), Protocol: proto}
}

func TestParseAddressAssign(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		value []byte
		want  []AssignedAddress
	}{
		{"empty: all removed", nil, nil},
		{"rfc 9484 fig 15", addr4(varint(1), "192.0.2.11", 32),
			[]AssignedAddress{{1, pfx("192.0.2.11/32")}}},
		{"unsolicited v4 and v6", cat(addr4(varint(0), "192.0.2.3", 32), addr6(varint(0), "2001:db8::1234:1234", 128)),
			[]AssignedAddress{{0, pfx("192.0.2.3/32")}, {0, pfx("2001:db8::1234:1234/128")}}},
		{"rejection", cat(addr4(varint(7), "0.0.0.0", 32), addr6(varint(8), "::", 128)),
			[]AssignedAddress{{7, pfx("0.0.0.0/32")}, {8, pfx("::/128")}}},
		{"prefixes", cat(addr6(varint(3), "2001:db8:1::", 48), addr4(varint(4), "10.0.0.0", 8), addr4(varint(5), "0.0.0.0", 0)),
			[]AssignedAddress{{3, pfx("2001:db8:1::/48")}, {4, pfx("10.0.0.0/8")}, {5, pfx("0.0.0.0/0")}}},
		{"non-minimal and max request id", cat(addr4(varintN(9, 8), "192.0.2.1", 32), addr4(varint(1<<62-1), "192.0.2.2", 32)),
			[]AssignedAddress{{9, pfx("192.0.2.1/32")}, {1<<62 - 1, pfx("192.0.2.2/32")}}},
		{"v4-mapped stays v6", addr6(varint(1), "::ffff:192.0.2.1", 128),
			[]AssignedAddress{{1, pfx("::ffff:192.0.2.1/128")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAddressAssign(tc.value)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.value, normalizeIDs(tc.value, AppendAddressAssign(nil, got)))
		})
	}
}

// normalizeIDs returns enc when value used the shortest Request IDs, and
// value otherwise: a non-minimal varint does not re-encode byte for byte.
func normalizeIDs(value, enc []byte) []byte {
	if len(value) != len(enc) {
		return value
	}
	return enc
}

func TestParseAddressErrors(t *testing.T) {
	ok4 := addr4(varint(1), "192.0.2.1", 32)
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"version 0", cat(varint(1), []byte{0, 192, 0, 2, 1, 32})},
		{"version 5", cat(varint(1), []byte{5, 192, 0, 2, 1, 32})},
		{"version 6 with v4 length", cat(varint(1), []byte{6, 192, 0, 2, 1, 32})},
		{"truncated id", []byte{0x80, 0, 0}},
		{"truncated long id", cat(varintN(1, 8)[:7])},
		{"only id", varint(1)},
		{"truncated v4 address", cat(varint(1), []byte{4, 192, 0, 2})},
		{"missing v4 prefix length", ok4[:len(ok4)-1]},
		{"missing v6 prefix length", func() []byte { b := addr6(varint(1), "2001:db8::1", 128); return b[:len(b)-1] }()},
		{"second entry truncated", cat(ok4, ok4[:5])},
		{"v4 prefix length 33", addr4(varint(1), "192.0.2.1", 33)},
		{"v4 prefix length 255", addr4(varint(1), "192.0.2.1", 255)},
		{"v6 prefix length 129", addr6(varint(1), "2001:db8::1", 129)},
		{"v4 host bits", addr4(varint(1), "192.0.2.1", 24)},
		{"v4 host bit /0", addr4(varint(1), "0.0.0.1", 0)},
		{"v6 host bits", addr6(varint(1), "2001:db8::1", 64)},
		{"v6 last host bit", addr6(varint(1), "2001:db8::8000:0:0:0", 64)},
		{"valid then bad", cat(ok4, addr4(varint(2), "10.0.0.1", 8))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAddressAssign(tc.value)
			require.ErrorIs(t, err, ErrMalformedIPCapsule)
			_, err = ParseAddressRequest(tc.value)
			require.ErrorIs(t, err, ErrMalformedIPCapsule)
		})
	}
}

func TestParseAddressRequest(t *testing.T) {
	got, err := ParseAddressRequest(cat(addr4(varint(1), "0.0.0.0", 32), addr6(varint(2), "::", 64), addr6(varint(3), "2001:db8::", 64)))
	require.NoError(t, err)
	require.Equal(t, []RequestedAddress{
		{1, netip.MustParsePrefix("0.0.0.0/32")}, // any IPv4 address
		{2, netip.MustParsePrefix("::/64")},      // any IPv6 /64
		{3, netip.MustParsePrefix("2001:db8::/64")},
	}, got)

	_, err = ParseAddressRequest(nil)
	require.ErrorIs(t, err, ErrMalformedIPCapsule, "empty request")
	_, err = ParseAddressRequest(addr4(varint(0), "0.0.0.0", 32))
	require.ErrorIs(t, err, ErrMalformedIPCapsule, "request ID 0")
	_, err = ParseAddressRequest(cat(addr4(varint(1), "0.0.0.0", 32), addr4(varintN(0, 4), "0.0.0.0", 32)))
	require.ErrorIs(t, err, ErrMalformedIPCapsule, "request ID 0, non-minimal")

	// Zero IDs are fine in an assignment.
	_, err = ParseAddressAssign(addr4(varint(0), "0.0.0.0", 32))
	require.NoError(t, err)
}

func TestAppendAddressPanics(t *testing.T) {
	good := netip.MustParsePrefix("192.0.2.0/24")
	require.Panics(t, func() { AppendAddressAssign(nil, []AssignedAddress{{1, netip.Prefix{}}}) }, "invalid prefix")
	require.Panics(t, func() {
		AppendAddressAssign(nil, []AssignedAddress{{1, netip.PrefixFrom(netip.MustParseAddr("192.0.2.1"), 24)}})
	}, "host bits")
	require.Panics(t, func() { AppendAddressAssign(nil, []AssignedAddress{{1 << 62, good}}) }, "request ID too large")
	require.Panics(t, func() { AppendAddressRequest(nil, nil) }, "empty request")
	require.Panics(t, func() { AppendAddressRequest(nil, []RequestedAddress{{0, good}}) }, "request ID 0")
	require.Equal(t, []byte{0xaa}, AppendAddressAssign([]byte{0xaa}, nil), "empty assignment")
}

func TestAddressRoundTrip(t *testing.T) {
	assign := []AssignedAddress{
		{0, netip.MustParsePrefix("203.0.113.100/32")},
		{1 << 40, netip.MustParsePrefix("2001:db8::/32")},
		{63, netip.MustParsePrefix("::/0")},
		{64, netip.MustParsePrefix("::/128")},
	}
	b := AppendAddressAssign([]byte("prefix"), assign)
	got, err := ParseAddressAssign(b[len("prefix"):])
	require.NoError(t, err)
	require.Equal(t, assign, got)

	req := []RequestedAddress{{1, netip.MustParsePrefix("0.0.0.0/32")}, {2, netip.MustParsePrefix("fd00::/8")}}
	gotReq, err := ParseAddressRequest(AppendAddressRequest(nil, req))
	require.NoError(t, err)
	require.Equal(t, req, gotReq)
}

func TestParseRouteAdvertisement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value []byte
		want  []IPRoute
	}{
		{"empty: all withdrawn", nil, nil},
		{"rfc 9484 fig 15: full tunnel", range4("0.0.0.0", "255.255.255.255", 0),
			[]IPRoute{route("0.0.0.0", "255.255.255.255", 0)}},
		{"rfc 9484 fig 16: split tunnel", cat(range4("192.0.2.0", "192.0.2.41", 0), range4("192.0.2.43", "192.0.2.255", 0)),
			[]IPRoute{route("192.0.2.0", "192.0.2.41", 0), route("192.0.2.43", "192.0.2.255", 0)}},
		{"rfc 9484 fig 22: v4 then v6, one protocol", cat(range4("198.51.100.2", "198.51.100.2", 17), range6("2001:db8:3456::b", "2001:db8:3456::b", 17)),
			[]IPRoute{route("198.51.100.2", "198.51.100.2", 17), route("2001:db8:3456::b", "2001:db8:3456::b", 17)}},
		{"adjacent ranges", cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.1.0", "10.0.1.255", 0)),
			[]IPRoute{route("10.0.0.0", "10.0.0.255", 0), route("10.0.1.0", "10.0.1.255", 0)}},
		{"protocols ascend, addresses restart", cat(
			range4("10.0.0.0", "10.0.0.255", 0),
			range4("10.0.2.0", "10.0.2.255", 6), range4("10.0.3.0", "10.0.3.255", 6),
			range4("10.0.1.0", "10.0.1.255", 17), range4("10.0.2.0", "10.0.2.255", 17),
		), []IPRoute{
			route("10.0.0.0", "10.0.0.255", 0),
			route("10.0.2.0", "10.0.2.255", 6), route("10.0.3.0", "10.0.3.255", 6),
			route("10.0.1.0", "10.0.1.255", 17), route("10.0.2.0", "10.0.2.255", 17),
		}},
		{"v6 specific between v6 all-protocol ranges", cat(
			range6("2001:db8::", "2001:db8::ffff", 0), range6("2001:db8::2:0", "2001:db8::2:ffff", 0),
			range6("2001:db8::1:0", "2001:db8::1:ffff", 6),
		), []IPRoute{
			route("2001:db8::", "2001:db8::ffff", 0), route("2001:db8::2:0", "2001:db8::2:ffff", 0),
			route("2001:db8::1:0", "2001:db8::1:ffff", 6),
		}},
		{"same range, other families", cat(range4("0.0.0.0", "255.255.255.255", 6), range6("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0)),
			[]IPRoute{route("0.0.0.0", "255.255.255.255", 6), route("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRouteAdvertisement(tc.value)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.NoError(t, ValidateRoutes(got))
			require.Equal(t, tc.value, AppendRouteAdvertisement(nil, got), "ranges have one encoding")
		})
	}
}

func TestParseRouteAdvertisementErrors(t *testing.T) {
	ok := range4("10.0.0.0", "10.0.0.255", 0)
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"version 0", cat([]byte{0}, ok[1:])},
		{"version 5", cat([]byte{5}, ok[1:])},
		{"truncated v4", ok[:len(ok)-1]},
		{"truncated v4 end", ok[:6]},
		{"truncated v6", func() []byte { b := range6("::", "::1", 0); return b[:33] }()},
		{"version 6 with v4 length", cat([]byte{6}, ok[1:])},
		{"second truncated", cat(ok, ok[:1])},
		{"v4 start above end", range4("10.0.0.2", "10.0.0.1", 0)},
		{"v6 start above end", range6("2001:db8::2", "2001:db8::1", 17)},
		{"v6 before v4", cat(range6("::", "::1", 0), ok)},
		{"protocols descend", cat(range4("10.0.0.0", "10.0.0.255", 17), range4("10.0.1.0", "10.0.1.255", 6))},
		{"same protocol, addresses descend", cat(range4("10.0.1.0", "10.0.1.255", 6), range4("10.0.0.0", "10.0.0.255", 6))},
		{"same protocol, overlap", cat(range4("10.0.0.0", "10.0.1.0", 6), range4("10.0.1.0", "10.0.1.255", 6))},
		{"same protocol, duplicate", cat(ok, ok)},
		{"v6 same protocol, overlap", cat(range6("2001:db8::", "2001:db8::ff", 0), range6("2001:db8::80", "2001:db8::1ff", 0))},
		{"specific overlaps all-protocol", cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.0.255", "10.0.1.0", 6))},
		{"specific inside all-protocol", cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.0.7", "10.0.0.7", 17))},
		{"specific covers all-protocol", cat(range4("10.0.0.7", "10.0.0.7", 0), range4("10.0.0.0", "10.0.0.255", 17))},
		{"second specific protocol overlaps", cat(
			range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.5.0", "10.0.5.255", 0),
			range4("10.0.1.0", "10.0.1.255", 6),
			range4("10.0.1.0", "10.0.1.255", 17), range4("10.0.5.9", "10.0.6.0", 17))},
		{"v6 specific overlaps all-protocol", cat(
			ok, range6("2001:db8::", "2001:db8::ffff", 0), range6("2001:db8::ffff", "2001:db8::1:0", 58))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRouteAdvertisement(tc.value)
			require.ErrorIs(t, err, ErrMalformedIPCapsule)
			require.True(t, refRoutesOK(tc.value) == false, "reference agrees")
		})
	}
}

func TestValidateRoutes(t *testing.T) {
	require.NoError(t, ValidateRoutes(nil))
	for name, routes := range map[string][]IPRoute{
		"zero addr":    {{}},
		"mixed family": {{Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("::1")}},
		"zone":         {{Start: netip.MustParseAddr("fe80::1%eth0"), End: netip.MustParseAddr("fe80::2")}},
		"start > end":  {route("10.0.0.2", "10.0.0.1", 0)},
	} {
		err := ValidateRoutes(routes)
		require.ErrorIs(t, err, ErrMalformedIPCapsule, name)
		require.Panics(t, func() { AppendRouteAdvertisement(nil, routes) }, name)
	}
}

func TestIPCapsuleParseAllocs(t *testing.T) {
	routes := cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.1.0", "10.0.1.255", 6), range6("::", "::ffff", 0))
	addrs := cat(addr4(varint(1), "192.0.2.1", 32), addr6(varint(2), "2001:db8::", 64))
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _, _ = ParseRouteAdvertisement(routes) }), "one exact-size slice")
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _, _ = ParseAddressAssign(addrs) }))
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _, _ = ParseAddressRequest(addrs) }))
}

// refRoutesOK is the reference for ParseRouteAdvertisement: it decodes the
// ranges the obvious way and checks every rule of RFC 9484 §4.7.3 on every
// pair of ranges, O(n²).
func refRoutesOK(b []byte) bool {
	type rng struct {
		v          byte
		start, end []byte
		proto      byte
	}
	var rs []rng
	for len(b) > 0 {
		var size int
		switch b[0] {
		case 4:
			size = 4
		case 6:
			size = 16
		default:
			return false
		}
		if len(b) < 2+2*size {
			return false
		}
		r := rng{b[0], b[1 : 1+size], b[1+size : 1+2*size], b[1+2*size]}
		if bytes.Compare(r.start, r.end) > 0 {
			return false
		}
		rs = append(rs, r)
		b = b[2+2*size:]
	}
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			a, c := rs[i], rs[j]
			if a.v > c.v || a.v == c.v && a.proto > c.proto {
				return false
			}
			if a.v == c.v && a.proto == c.proto && bytes.Compare(a.end, c.start) >= 0 {
				return false
			}
			overlap := bytes.Compare(a.start, c.end) <= 0 && bytes.Compare(c.start, a.end) <= 0
			if a.v == c.v && (a.proto == 0) != (c.proto == 0) && overlap {
				return false
			}
		}
	}
	return true
}

func FuzzRouteAdvertisement(f *testing.F) {
	f.Add([]byte{})
	f.Add(range4("0.0.0.0", "255.255.255.255", 0))
	f.Add(cat(range4("192.0.2.0", "192.0.2.41", 0), range4("192.0.2.43", "192.0.2.255", 0)))
	f.Add(cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.0.7", "10.0.0.7", 17)))
	f.Add(cat(range4("10.0.0.0", "10.0.0.255", 0), range4("10.0.1.0", "10.0.1.255", 6), range6("::", "::ffff", 0), range6("::1:0", "::1:0", 6)))
	f.Add([]byte{0, 0, 7, 2, 8, 1, 4, 9, 0, 1, 0, 3})
	f.Fuzz(func(t *testing.T, value []byte) {
		checkRoutes(t, value)
		// The same bytes as dense ranges, as they come and sorted.
		checkRoutes(t, denseRoutes(value, false))
		checkRoutes(t, denseRoutes(value, true))
	})
}

// checkRoutes checks ParseRouteAdvertisement against refRoutesOK and the
// encoder on value.
func checkRoutes(t *testing.T, value []byte) {
	got, err := ParseRouteAdvertisement(value)
	require.Equal(t, refRoutesOK(value), err == nil, "err: %v", err)
	if err != nil {
		require.ErrorIs(t, err, ErrMalformedIPCapsule)
		require.Nil(t, got)
		return
	}
	require.NoError(t, ValidateRoutes(got))
	// Ranges have a single encoding: the value re-encodes byte for byte.
	require.True(t, bytes.Equal(value, AppendRouteAdvertisement(nil, got)))
	again, err := ParseRouteAdvertisement(AppendRouteAdvertisement(nil, got))
	require.NoError(t, err)
	require.Equal(t, got, again)
}

// denseRoutes reads value as small ranges, three bytes each, in a tiny
// address space and with protocols 0, 6 and 17, so that the fuzzer meets
// touching and overlapping ranges often; sorted, most lists are accepted
// and the overlap rule between protocol 0 and the others is what decides.
func denseRoutes(value []byte, sorted bool) []byte {
	type r struct {
		v, proto, start, end byte
	}
	var rs []r
	for ; len(value) >= 3; value = value[3:] {
		v := byte(4)
		if value[0]&1 == 1 {
			v = 6
		}
		start := value[1] % 32
		rs = append(rs, r{v, []byte{0, 6, 17}[value[0]>>1%3], start, start + value[2]%8})
	}
	if sorted {
		slices.SortFunc(rs, func(a, b r) int {
			return cmp.Or(cmp.Compare(a.v, b.v), cmp.Compare(a.proto, b.proto), cmp.Compare(a.start, b.start))
		})
	}
	var out []byte
	for _, x := range rs {
		if x.v == 4 {
			out = append(out, 4, 10, 0, 0, x.start, 10, 0, 0, x.end, x.proto)
			continue
		}
		s, e := make([]byte, 16), make([]byte, 16)
		s[0], e[0], s[15], e[15] = 0x20, 0x20, x.start, x.end
		out = append(append(append(append(out, 6), s...), e...), x.proto)
	}
	return out
}

// refAddresses is the reference for the address capsules: it decodes the
// entries the obvious way, or returns ok false if one breaks RFC 9484
// §4.7.1.
func refAddresses(b []byte) (ids []uint64, prefixes []netip.Prefix, ok bool) {
	for len(b) > 0 {
		id, n, ok := refVarint(b)
		if !ok || len(b) < n+1 {
			return nil, nil, false
		}
		b = b[n:]
		var size int
		switch b[0] {
		case 4:
			size = 4
		case 6:
			size = 16
		default:
			return nil, nil, false
		}
		if len(b) < 2+size {
			return nil, nil, false
		}
		raw, bits := b[1:1+size], int(b[1+size])
		if bits > 8*size {
			return nil, nil, false
		}
		for i := bits; i < 8*size; i++ {
			if raw[i/8]&(0x80>>(i%8)) != 0 {
				return nil, nil, false
			}
		}
		a, _ := netip.AddrFromSlice(raw)
		ids = append(ids, id)
		prefixes = append(prefixes, netip.PrefixFrom(a, bits))
		b = b[2+size:]
	}
	return ids, prefixes, true
}

func FuzzAddressCapsules(f *testing.F) {
	f.Add([]byte{})
	f.Add(addr4(varint(1), "192.0.2.11", 32))
	f.Add(cat(addr4(varint(0), "192.0.2.3", 32), addr6(varint(0), "2001:db8::1234:1234", 128)))
	f.Add(cat(addr4(varintN(7, 8), "0.0.0.0", 32), addr6(varint(1<<62-1), "2001:db8::", 64)))
	f.Add(addr4(varint(1), "192.0.2.1", 24))
	f.Fuzz(func(t *testing.T, value []byte) {
		ids, prefixes, ok := refAddresses(value)

		assign, err := ParseAddressAssign(value)
		require.Equal(t, ok, err == nil, "err: %v", err)
		if err == nil {
			require.Len(t, assign, len(ids))
			for i, a := range assign {
				require.Equal(t, ids[i], a.RequestID)
				require.Equal(t, prefixes[i], a.Prefix)
				require.Equal(t, a.Prefix.Masked(), a.Prefix)
			}
			again, err := ParseAddressAssign(AppendAddressAssign(nil, assign))
			require.NoError(t, err)
			require.Equal(t, assign, again)
		} else {
			require.ErrorIs(t, err, ErrMalformedIPCapsule)
		}

		req, err := ParseAddressRequest(value)
		reqOK := ok && len(ids) > 0
		for _, id := range ids {
			reqOK = reqOK && id != 0
		}
		require.Equal(t, reqOK, err == nil, "err: %v", err)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformedIPCapsule))
			return
		}
		for i, r := range req {
			require.Equal(t, assign[i], AssignedAddress(r))
		}
		again, err := ParseAddressRequest(AppendAddressRequest(nil, req))
		require.NoError(t, err)
		require.Equal(t, req, again)
	})
}
