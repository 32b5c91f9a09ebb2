package wire

import (
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// varint returns the shortest encoding of v.
func varint(v uint64) []byte {
	b, n := make([]byte, 8), lenOf(v)
	putVarint(b, v, n)
	return b[:n]
}

// varintN returns v encoded in exactly n bytes (possibly non-minimal).
func varintN(v uint64, n int) []byte {
	b := make([]byte, n)
	putVarint(b, v, n)
	return b
}

func lenOf(v uint64) int {
	switch {
	case v < 1<<6:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<30:
		return 4
	}
	return 8
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// frame returns an HTTP/3 frame of type typ with payload.
func frame(typ uint64, payload []byte) []byte {
	return cat(varint(typ), varint(uint64(len(payload))), payload)
}

// cycleReader returns its data over and over, never ending; it lets
// steady-state allocation tests read an endless stream.
type cycleReader struct {
	data []byte
	off  int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// zeroReader returns n zero bytes, then io.EOF, without holding them.
type zeroReader struct{ n int64 }

func (r *zeroReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	clear(p)
	r.n -= int64(len(p))
	return len(p), nil
}

var errBoom = errors.New("boom")

// requireCode asserts that err is an *H3Error with code want.
func requireCode(t testing.TB, err error, want ErrorCode) *H3Error {
	t.Helper()
	var h *H3Error
	require.ErrorAs(t, err, &h)
	require.Equal(t, want, h.Code, "error: %v", err)
	return h
}
