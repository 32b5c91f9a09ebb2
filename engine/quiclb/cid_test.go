package quiclb

import (
	"bytes"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodedCID is what a load balancer reads from an ID: the reference
// decoder below is written from the layout's description, not from the
// generator's constants.
type decodedCID struct {
	configRotation int
	length         int // self-encoded: the low five bits plus one
	serverID       [8]byte
	transport      int
	nonce          [6]byte
}

func decodeCID(t *testing.T, b []byte) decodedCID {
	t.Helper()
	require.Len(t, b, 16)
	var d decodedCID
	d.configRotation = int(b[0] >> 5)
	d.length = int(b[0]&0x1f) + 1
	copy(d.serverID[:], b[1:9])
	d.transport = int(b[9])
	copy(d.nonce[:], b[10:16])
	return d
}

func TestGeneratorLayout(t *testing.T) {
	sid, err := ParseServerID("0x0123456789abcdef")
	require.NoError(t, err)
	g, err := NewGenerator(GeneratorConfig{ServerID: sid, Transport: 7, ConfigRotation: 2})
	require.NoError(t, err)
	require.Equal(t, 16, g.ConnectionIDLen())
	nonces := make(map[[6]byte]bool)
	for range 1000 {
		id, err := g.GenerateConnectionID()
		require.NoError(t, err)
		d := decodeCID(t, id.Bytes())
		require.Equal(t, 2, d.configRotation)
		require.Equal(t, 16, d.length)
		require.Equal(t, [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, d.serverID)
		require.Equal(t, 7, d.transport)
		require.False(t, nonces[d.nonce], "nonce repeated")
		nonces[d.nonce] = true
	}
	require.Zero(t, g.Redrawn())
}

func TestParseServerID(t *testing.T) {
	id, err := ParseServerID("00000000000000ff")
	require.NoError(t, err)
	require.Equal(t, ServerID{7: 0xff}, id)
	require.Equal(t, "0x00000000000000ff", id.String())
	for _, bad := range []string{"", "0x", "0x00", "0x00000000000000fff", "0x000000000000000g"} {
		_, err := ParseServerID(bad)
		require.Error(t, err, bad)
	}
}

func TestGeneratorBounds(t *testing.T) {
	for _, cfg := range []GeneratorConfig{{Transport: -1}, {Transport: 256}, {ConfigRotation: 7}, {ConfigRotation: -1}} {
		_, err := NewGenerator(cfg)
		require.Error(t, err, "%+v", cfg)
	}
	_, err := NewGenerator(GeneratorConfig{Transport: 255, ConfigRotation: 6})
	require.NoError(t, err)
}

// repeatReader gives the same nonce n times, then real randomness.
type repeatReader struct {
	mu     sync.Mutex
	nonce  []byte
	repeat int
}

func (r *repeatReader) Read(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repeat > 0 {
		r.repeat--
		return copy(b, r.nonce), nil
	}
	return rand.Read(b)
}

func TestGeneratorRedrawsCollisions(t *testing.T) {
	src := &repeatReader{nonce: []byte{1, 2, 3, 4, 5, 6}, repeat: 3}
	g, err := NewGenerator(GeneratorConfig{Rand: src})
	require.NoError(t, err)
	first, err := g.GenerateConnectionID()
	require.NoError(t, err)
	second, err := g.GenerateConnectionID() // draws the same nonce twice, then a fresh one
	require.NoError(t, err)
	require.NotEqual(t, first, second)
	require.Equal(t, []byte{1, 2, 3, 4, 5, 6}, first.Bytes()[10:])
	require.Equal(t, uint64(2), g.Redrawn())
}

func TestGeneratorRefusesABrokenSource(t *testing.T) {
	g, err := NewGenerator(GeneratorConfig{Rand: &repeatReader{nonce: make([]byte, 6), repeat: 1000}})
	require.NoError(t, err)
	_, err = g.GenerateConnectionID()
	require.NoError(t, err)
	_, err = g.GenerateConnectionID()
	require.ErrorIs(t, err, errNonceSource)
	g, err = NewGenerator(GeneratorConfig{Rand: io.LimitReader(rand.Reader, 0)})
	require.NoError(t, err)
	_, err = g.GenerateConnectionID()
	require.Error(t, err)
}

func TestGeneratorForgetsAfterTwoGenerations(t *testing.T) {
	g, err := NewGenerator(GeneratorConfig{})
	require.NoError(t, err)
	_, err = g.GenerateConnectionID()
	require.NoError(t, err)
	g.mu.Lock()
	require.Len(t, g.cur, 1)
	at := g.rotateAt
	g.rotateLocked(at) // one generation on: still remembered
	require.Len(t, g.prev, 1)
	g.rotateLocked(at.Add(g.retain)) // two: forgotten
	require.Empty(t, g.prev)
	require.Empty(t, g.cur)
	g.mu.Unlock()
}

func TestGeneratorConcurrent(t *testing.T) {
	g, err := NewGenerator(GeneratorConfig{})
	require.NoError(t, err)
	var mu sync.Mutex
	seen := make(map[string]bool)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				id, err := g.GenerateConnectionID()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[string(id.Bytes())] {
					t.Errorf("ID %x issued twice", id.Bytes())
				}
				seen[string(id.Bytes())] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, 2000)
	require.True(t, bytes.Equal(g.prefix[:], func() []byte { id, _ := g.GenerateConnectionID(); return id.Bytes()[:10] }()))
}
