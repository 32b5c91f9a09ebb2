package wire

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// Hand-built values, byte by byte from the draft's layouts.
func TestCompressionAssignWire(t *testing.T) {
	cases := []struct {
		name string
		wire []byte
		want CompressionAssign
	}{
		{"uncompressed", []byte{0x02, 0x00}, CompressionAssign{ContextID: 2}},
		{"ipv4", []byte{0x04, 0x04, 192, 0, 2, 45, 0xd4, 0x31},
			CompressionAssign{ContextID: 4, Addr: netip.MustParseAddrPort("192.0.2.45:54321")}},
		{"ipv6, 2-byte context ID", append(append([]byte{0x40, 0x80, 0x06},
			0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34), 0x01, 0xbb),
			CompressionAssign{ContextID: 128, Addr: netip.MustParseAddrPort("[2001:db8::1234]:443")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseCompressionAssign(c.wire)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			require.Equal(t, c.wire, AppendCompressionAssign(nil, c.want))
		})
	}
	for _, bad := range [][]byte{
		{},                                // no context ID
		{0x02},                            // no IP version
		{0x02, 0x05},                      // version 5
		{0x02, 0x00, 0x00},                // bytes after version 0
		{0x02, 0x04, 1, 2, 3, 4},          // no port
		{0x02, 0x04, 1, 2, 3, 4, 0, 1, 9}, // trailing byte
		{0x02, 0x06, 1, 2, 3, 4, 0, 1},    // IPv6 cut short
		{0x40},                            // truncated varint
	} {
		_, err := ParseCompressionAssign(bad)
		require.ErrorIs(t, err, ErrMalformedBind, "% x", bad)
	}
}

func TestCompressionIDWire(t *testing.T) {
	id, err := ParseCompressionID([]byte{0x41, 0x00})
	require.NoError(t, err)
	require.Equal(t, uint64(256), id)
	require.Equal(t, []byte{0x41, 0x00}, AppendCompressionID(nil, 256))
	for _, bad := range [][]byte{{}, {0x41}, {0x02, 0x00}} {
		_, err := ParseCompressionID(bad)
		require.ErrorIs(t, err, ErrMalformedBind, "% x", bad)
	}
}

func TestUncompressedWire(t *testing.T) {
	b := []byte{0x04, 127, 0, 0, 1, 0x1f, 0x90, 'h', 'i'}
	addr, payload, err := ParseUncompressed(b)
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.1:8080"), addr)
	require.Equal(t, []byte("hi"), payload)
	require.Equal(t, b[:7], AppendAddrPort(nil, addr))
	put := make([]byte, AddrPortLen(addr))
	PutAddrPort(put, addr)
	require.Equal(t, b[:7], put)

	v6 := netip.MustParseAddrPort("[::1]:7")
	require.Equal(t, 19, AddrPortLen(v6))
	enc := AppendAddrPort(nil, v6)
	put = make([]byte, 19)
	PutAddrPort(put, v6)
	require.Equal(t, enc, put)
	got, rest, err := ParseUncompressed(append(enc, 'x'))
	require.NoError(t, err)
	require.Equal(t, v6, got)
	require.Equal(t, []byte("x"), rest)

	_, _, err = ParseUncompressed([]byte{0x00, 'x'}) // version 0 is only for ASSIGN
	require.ErrorIs(t, err, ErrMalformedBind)

	allocs := testing.AllocsPerRun(100, func() { ParseUncompressed(b) })
	require.Zero(t, allocs)
	allocs = testing.AllocsPerRun(100, func() { PutAddrPort(put, v6) })
	require.Zero(t, allocs)
}

// refAddrPort is the obvious reading of IP Version, Address, Port.
func refAddrPort(b []byte) (netip.AddrPort, []byte, bool) {
	if len(b) == 0 {
		return netip.AddrPort{}, nil, false
	}
	n := map[byte]int{4: 4, 6: 16}[b[0]]
	if n == 0 || len(b) < 1+n+2 {
		return netip.AddrPort{}, nil, false
	}
	ip, _ := netip.AddrFromSlice(b[1 : 1+n])
	return netip.AddrPortFrom(ip, uint16(b[1+n])<<8|uint16(b[2+n])), b[3+n:], true
}

func FuzzParseCompressionAssign(f *testing.F) {
	f.Add([]byte{0x02, 0x00})
	f.Add([]byte{0x04, 0x04, 192, 0, 2, 45, 0xd4, 0x31})
	f.Add(append([]byte{0x40, 0x80, 0x06}, make([]byte, 18)...))
	f.Add([]byte{0x02, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseCompressionAssign(b)
		id, n, ok := refVarint(b)
		var want CompressionAssign
		wantOK := ok
		if ok {
			rest := b[n:]
			if len(rest) == 1 && rest[0] == 0 {
				want = CompressionAssign{ContextID: id}
			} else {
				addr, tail, aok := refAddrPort(rest)
				wantOK = aok && len(tail) == 0
				want = CompressionAssign{ContextID: id, Addr: addr}
			}
		}
		if !wantOK {
			require.ErrorIs(t, err, ErrMalformedBind)
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, got)
		// Round trip: the encoding is canonical except for varint length.
		again, err := ParseCompressionAssign(AppendCompressionAssign(nil, got))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

func FuzzParseCompressionID(f *testing.F) {
	f.Add([]byte{0x02})
	f.Add([]byte{0x41, 0x00})
	f.Add([]byte{0x02, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseCompressionID(b)
		id, n, ok := refVarint(b)
		if !ok || n != len(b) {
			require.ErrorIs(t, err, ErrMalformedBind)
			return
		}
		require.NoError(t, err)
		require.Equal(t, id, got)
	})
}

func FuzzParseUncompressed(f *testing.F) {
	f.Add([]byte{0x04, 127, 0, 0, 1, 0x1f, 0x90, 'h', 'i'})
	f.Add(append([]byte{0x06}, make([]byte, 19)...))
	f.Add([]byte{0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, payload, err := ParseUncompressed(b)
		wantAddr, wantPayload, ok := refAddrPort(b)
		if !ok {
			require.ErrorIs(t, err, ErrMalformedBind)
			return
		}
		require.NoError(t, err)
		require.Equal(t, wantAddr, addr)
		require.Equal(t, wantPayload, payload)
		require.Equal(t, b[:len(b)-len(payload)], AppendAddrPort(nil, addr))
	})
}
