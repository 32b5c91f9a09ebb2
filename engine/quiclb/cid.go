package quiclb

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// The connection ID layout, 16 octets:
//
//	octet  0      first octet: config rotation (3 bits) | CIDLen-1 (5 bits)
//	octets 1–8    server ID (ServerID; AWS NLB QuicServerId)
//	octet  9      transport index on the host (the kernel steers by it)
//	octets 10–15  nonce, 48 bits from crypto/rand
//
// A QUIC-LB load balancer in plaintext mode sees octets 1–8 as the server ID
// and 9–15 as the nonce (the draft's "server process demultiplexing" uses
// nonce bits so). The transport octet links the IDs of one transport to each
// other; the draft allows that in plaintext mode, which links the server ID
// already.
const (
	CIDLen          = 16
	ServerIDLen     = 8
	serverIDOffset  = 1
	transportOffset = serverIDOffset + ServerIDLen // 9
	nonceOffset     = transportOffset + 1          // 10
	nonceLen        = CIDLen - nonceOffset         // 6
	// MaxConfigRotation is the largest config rotation codepoint; 0b111
	// marks an unroutable ID in QUIC-LB.
	MaxConfigRotation = 6
	// MaxTransports is how many transports a host can steer to: the
	// transport octet's range.
	MaxTransports = 256
)

// A ServerID names one host (or one instance) to a load balancer.
type ServerID [ServerIDLen]byte

// ParseServerID reads 16 hex digits, with or without a 0x prefix: the
// QuicServerId format of AWS NLB target registration.
func ParseServerID(s string) (ServerID, error) {
	var id ServerID
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(h) != 2*ServerIDLen {
		return id, fmt.Errorf("server ID %q: want %d hex digits", s, 2*ServerIDLen)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("server ID %q: %w", s, err)
	}
	return id, nil
}

// RandomServerID draws a server ID, for a host that was given none.
func RandomServerID() (ServerID, error) {
	var id ServerID
	_, err := rand.Read(id[:])
	return id, err
}

// String is the QuicServerId form, 0x and 16 hex digits.
func (id ServerID) String() string { return "0x" + hex.EncodeToString(id[:]) }

// GeneratorConfig configures a Generator.
type GeneratorConfig struct {
	ServerID ServerID
	// Transport is the transport's index on the host, 0–255: its socket's
	// slot in the reuseport group when the group is this host's alone.
	Transport int
	// ConfigRotation is the QUIC-LB config rotation codepoint, 0–6.
	ConfigRotation int
	// Retain is how long an issued ID is remembered for collision checks.
	// Default DefaultRetain.
	Retain time.Duration
	// Rand is the nonce source. Default crypto/rand.Reader.
	Rand io.Reader
}

// DefaultRetain is how long a Generator remembers the IDs it issued.
const DefaultRetain = 10 * time.Minute

// maxRemembered bounds the IDs a Generator remembers per generation; a full
// generation rotates early.
const maxRemembered = 1 << 20

// A Generator makes a transport's connection IDs (quic.ConnectionIDGenerator;
// one per quic.Transport). It is safe for concurrent use.
//
// Collisions: quic-go silently keeps the first connection with an ID when a
// new one collides, so the Generator itself redraws a nonce that it issued
// before. It remembers the IDs it issued in two generations of a set, each
// covering Retain (or maxRemembered IDs), so an ID issued within the last
// Retain is never issued again. quic-go does not tell a generator when an ID
// retires, so an ID older than that is covered by chance only: with L live
// IDs older than Retain on one transport, a draw collides with probability
// L/2^48 (one million such IDs: 3.6e-9 per draw; the first collision is
// expected after about 2^24, 17 million, draws among IDs that all stayed
// live).
type Generator struct {
	prefix [nonceOffset]byte // first octet, server ID, transport
	retain time.Duration
	rand   io.Reader

	mu       sync.Mutex // guards the fields below
	cur      map[[nonceLen]byte]struct{}
	prev     map[[nonceLen]byte]struct{}
	rotateAt time.Time
	redrawn  uint64
}

var _ quic.ConnectionIDGenerator = (*Generator)(nil)

// NewGenerator returns a generator for cfg.
func NewGenerator(cfg GeneratorConfig) (*Generator, error) {
	if cfg.Transport < 0 || cfg.Transport >= MaxTransports {
		return nil, fmt.Errorf("quiclb: transport index %d out of 0–%d", cfg.Transport, MaxTransports-1)
	}
	if cfg.ConfigRotation < 0 || cfg.ConfigRotation > MaxConfigRotation {
		return nil, fmt.Errorf("quiclb: config rotation %d out of 0–%d", cfg.ConfigRotation, MaxConfigRotation)
	}
	if cfg.Retain <= 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	g := &Generator{retain: cfg.Retain, rand: cfg.Rand, cur: make(map[[nonceLen]byte]struct{})}
	g.prefix[0] = FirstOctet(cfg.ConfigRotation)
	copy(g.prefix[serverIDOffset:], cfg.ServerID[:])
	g.prefix[transportOffset] = byte(cfg.Transport)
	return g, nil
}

// FirstOctet is the first octet of every ID with config rotation cr: the
// rotation in the top three bits, the ID's length minus one in the low five
// (QUIC-LB's self-encoded length).
func FirstOctet(cr int) byte { return byte(cr)<<5 | (CIDLen - 1) }

// ConnectionIDLen is CIDLen.
func (g *Generator) ConnectionIDLen() int { return CIDLen }

// GenerateConnectionID returns a new ID with a nonce not issued within the
// last Retain.
func (g *Generator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [CIDLen]byte
	copy(b[:], g.prefix[:])
	var nonce [nonceLen]byte
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotateLocked(time.Now())
	for tries := 0; ; tries++ {
		if _, err := io.ReadFull(g.rand, nonce[:]); err != nil {
			return quic.ConnectionID{}, fmt.Errorf("quiclb: nonce: %w", err)
		}
		_, inCur := g.cur[nonce]
		_, inPrev := g.prev[nonce]
		if !inCur && !inPrev {
			break
		}
		g.redrawn++
		if tries == 64 {
			return quic.ConnectionID{}, errNonceSource
		}
	}
	g.cur[nonce] = struct{}{}
	copy(b[nonceOffset:], nonce[:])
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// errNonceSource: 64 redraws in a row collided, which a working random
// source does not do.
var errNonceSource = errors.New("quiclb: the nonce source repeats itself")

// rotateLocked starts a new generation when the current one is Retain old
// or full. The caller holds g.mu.
func (g *Generator) rotateLocked(now time.Time) {
	if g.rotateAt.IsZero() {
		g.rotateAt = now.Add(g.retain)
	}
	if now.Before(g.rotateAt) && len(g.cur) < maxRemembered {
		return
	}
	g.prev, g.cur = g.cur, make(map[[nonceLen]byte]struct{}, len(g.cur))
	g.rotateAt = now.Add(g.retain)
}

// Redrawn is how many nonces were drawn again because they collided.
func (g *Generator) Redrawn() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.redrawn
}
