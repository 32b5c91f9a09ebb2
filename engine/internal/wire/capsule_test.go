package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

type capsule struct {
	typ   uint64
	value []byte
}

// readAll reads capsules until an error and returns them, copied, with it.
func readAll(c *CapsuleReader) ([]capsule, error) {
	var out []capsule
	for {
		typ, v, err := c.Next()
		if err != nil {
			return out, err
		}
		out = append(out, capsule{typ, bytes.Clone(v)})
	}
}

func onlyDatagrams(typ uint64) bool { return typ == CapsuleDatagram }

func TestCapsuleRoundTrip(t *testing.T) {
	want := []capsule{
		{CapsuleDatagram, []byte{0, 'h', 'i'}},
		{CapsuleAddressAssign, []byte{}},
		{CapsuleRouteAdvertisement, bytes.Repeat([]byte{7}, 1000)},
		{1<<62 - 1, []byte("max type")},
		{CapsuleDatagram, bytes.Repeat([]byte{1}, DefaultMaxCapsuleValue)},
	}
	var stream []byte
	for _, c := range want {
		stream = AppendCapsule(stream, c.typ, c.value)
	}
	for name, r := range map[string]io.Reader{
		"bytes":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(stream)),
		"bufio":    bufio.NewReaderSize(bytes.NewReader(stream), 16),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(NewCapsuleReader(r, 0, nil))
			require.Equal(t, io.EOF, err, "clean end between capsules")
			require.Equal(t, want, got)
		})
	}
}

func TestCapsuleReaderSkipsUnwanted(t *testing.T) {
	stream := cat(
		AppendCapsule(nil, 0x1234, bytes.Repeat([]byte{9}, 1<<20)), // far above maxValue
		AppendCapsule(nil, CapsuleDatagram, []byte{0, 1}),
		AppendCapsule(nil, 0x21, nil), // reserved, empty
		AppendCapsule(nil, CapsuleAddressAssign, []byte{5}),
		AppendCapsule(nil, CapsuleDatagram, []byte{0, 2}),
	)
	c := NewCapsuleReader(iotest.HalfReader(bytes.NewReader(stream)), 100, onlyDatagrams)
	got, err := readAll(c)
	require.Equal(t, io.EOF, err)
	require.Equal(t, []capsule{{0, []byte{0, 1}}, {0, []byte{0, 2}}}, got)
	require.LessOrEqual(t, cap(c.buf), 100, "an unwanted capsule is never buffered")

	// An unwanted capsule of 2^62-1 bytes is skipped while streaming: the
	// reader reads on and only the end of the stream stops it.
	huge := cat(varint(0x99), varint(1<<62-1))
	c = NewCapsuleReader(io.MultiReader(bytes.NewReader(huge), &zeroReader{n: 8 << 20}), 0, onlyDatagrams)
	_, _, err = c.Next()
	require.ErrorIs(t, err, ErrMalformedCapsule)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Nil(t, c.buf)
}

func TestCapsuleReaderErrors(t *testing.T) {
	dgram := AppendCapsule(nil, CapsuleDatagram, []byte{0, 'x'})
	for _, tc := range []struct {
		name     string
		in       []byte
		maxValue int
		wanted   func(uint64) bool
		good     int   // capsules returned before the error
		err      error // errors.Is target
	}{
		{name: "empty stream", in: nil, err: io.EOF},
		{name: "clean end", in: cat(dgram, dgram), good: 2, err: io.EOF},
		{name: "end inside type", in: cat(dgram, []byte{0x40}), good: 1, err: ErrMalformedCapsule},
		{name: "end after type", in: cat(dgram, []byte{0x00}), good: 1, err: ErrMalformedCapsule},
		{name: "end inside length", in: cat(dgram, []byte{0x00, 0xc0, 0, 0}), good: 1, err: ErrMalformedCapsule},
		{name: "end inside value", in: cat(dgram, []byte{0x00, 0x05, 1, 2}), good: 1, err: ErrMalformedCapsule},
		{name: "end inside unwanted value", in: cat(dgram, []byte{0x17, 0x05, 1, 2}), wanted: onlyDatagrams, good: 1, err: ErrMalformedCapsule},
		{name: "end inside unwanted length", in: cat([]byte{0x17, 0x80}), wanted: onlyDatagrams, err: ErrMalformedCapsule},
		{name: "too large", in: AppendCapsule(nil, 0, make([]byte, 101)), maxValue: 100, err: ErrCapsuleTooLarge},
		{name: "exactly max", in: AppendCapsule(nil, 0, make([]byte, 100)), maxValue: 100, good: 1, err: io.EOF},
		{name: "default max", in: cat(varint(0), varint(DefaultMaxCapsuleValue+1)), err: ErrCapsuleTooLarge},
		{name: "max varint length", in: cat(varint(0), varint(1<<62-1)), err: ErrCapsuleTooLarge},
		{name: "too large but unwanted", in: cat(AppendCapsule(nil, 5, make([]byte, 101)), dgram), maxValue: 100, wanted: onlyDatagrams, good: 1, err: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCapsuleReader(iotest.OneByteReader(bytes.NewReader(tc.in)), tc.maxValue, tc.wanted)
			got, err := readAll(c)
			require.Len(t, got, tc.good)
			require.ErrorIs(t, err, tc.err)
			if errors.Is(err, ErrMalformedCapsule) {
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "wraps the cause")
			}
			_, _, err2 := c.Next()
			require.Equal(t, err, err2, "sticky")
		})
	}
}

func TestCapsuleReaderReadError(t *testing.T) {
	// A read error that is not an end of stream (a reset, a closed
	// connection) is passed through unchanged, not called malformed.
	for _, prefix := range [][]byte{nil, {0x00}, {0x00, 0x05, 1}} {
		c := NewCapsuleReader(io.MultiReader(bytes.NewReader(prefix), iotest.ErrReader(errBoom)), 0, nil)
		_, _, err := c.Next()
		require.Equal(t, errBoom, err)
	}
}

func TestCapsuleReaderReusesValue(t *testing.T) {
	stream := cat(AppendCapsule(nil, 0, []byte("aaaa")), AppendCapsule(nil, 0, []byte("bb")), AppendCapsule(nil, 0, make([]byte, 3000)))
	c := NewCapsuleReader(bytes.NewReader(stream), 0, nil)
	_, v1, err := c.Next()
	require.NoError(t, err)
	_, v2, err := c.Next()
	require.NoError(t, err)
	require.Equal(t, "bb", string(v2))
	require.Same(t, &v1[0], &v2[0], "one buffer, reused")
	_, v3, err := c.Next()
	require.NoError(t, err)
	require.Len(t, v3, 3000)
}

func TestCapsuleReaderAllocs(t *testing.T) {
	var stream []byte
	for i := range 10 {
		stream = AppendCapsule(stream, CapsuleDatagram, make([]byte, 100*i+1))
		stream = AppendCapsule(stream, 0x4242, make([]byte, 700)) // skipped
	}
	c := NewCapsuleReader(&cycleReader{data: stream}, 0, onlyDatagrams)
	for range 20 { // warm up: grow the value buffer to its steady size
		_, _, err := c.Next()
		require.NoError(t, err)
	}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		if _, _, err := c.Next(); err != nil {
			panic(err)
		}
	}))
}

func TestAppendCapsule(t *testing.T) {
	require.Equal(t, []byte{0x00, 0x02, 0xaa, 0xbb}, AppendCapsule(nil, 0, []byte{0xaa, 0xbb}))
	require.Equal(t, []byte{0x7f, 0xff, 0x40, 0x40}, AppendCapsule(nil, 0x3fff, make([]byte, 64))[:4])
	require.Panics(t, func() { AppendCapsule(nil, 1<<62, nil) })
}

func BenchmarkCapsuleReader(b *testing.B) {
	var stream []byte
	for range 16 {
		stream = AppendCapsule(stream, CapsuleDatagram, make([]byte, 1200))
	}
	c := NewCapsuleReader(&cycleReader{data: stream}, 0, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / 16))
	for b.Loop() {
		if _, _, err := c.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
