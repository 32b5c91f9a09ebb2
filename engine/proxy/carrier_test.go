package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/internal/wire"
)

// blockingOut is a capsuleOut whose client does not read: write blocks
// until unblock (or release).
type blockingOut struct {
	mu      sync.Mutex
	wrote   bytes.Buffer
	gate    chan struct{}
	once    sync.Once
	entered chan struct{}
	enter   sync.Once
}

func newBlockingOut() *blockingOut {
	return &blockingOut{gate: make(chan struct{}), entered: make(chan struct{})}
}

func (o *blockingOut) write(b []byte) error {
	o.enter.Do(func() { close(o.entered) })
	<-o.gate
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wrote.Write(b)
	return nil
}
func (o *blockingOut) flush() error { return nil }
func (o *blockingOut) unblock()     { o.once.Do(func() { close(o.gate) }) }

// A stream whose client does not read takes capsuleQueueLen capsules (and
// the one being written) and refuses the rest at once with
// errStreamBlocked: never a wait, never an unbounded queue. close cuts the
// stalled writer off and returns.
func TestCapsuleQueueSlowReaderDrops(t *testing.T) {
	out := newBlockingOut()
	q := newCapsuleQueue(out)
	v := append([]byte{0}, make([]byte, 1200)...)
	require.NoError(t, q.tryWriteDatagram(v))
	<-out.entered // the writer holds the first capsule, blocked
	var ok, blocked int
	for range 10 * capsuleQueueLen {
		switch err := q.tryWriteDatagram(v); err {
		case nil:
			ok++
		case errStreamBlocked:
			blocked++
		default:
			t.Fatal(err)
		}
	}
	require.Equal(t, capsuleQueueLen, ok)
	require.Equal(t, 9*capsuleQueueLen, blocked)
	q.close() // unblocks the writer after capsuleDrainTimeout
	require.ErrorIs(t, q.tryWriteDatagram(v), net.ErrClosed)
}

// What is queued at close is written, in order, as DATAGRAM capsules.
func TestCapsuleQueueWritesInOrder(t *testing.T) {
	out := newBlockingOut()
	out.unblock()
	q := newCapsuleQueue(out)
	for i := range 10 {
		require.NoError(t, q.tryWriteDatagram([]byte{0, byte(i)}))
	}
	q.close()
	cr := wire.NewCapsuleReader(&out.wrote, 1<<10, nil)
	for i := range 10 {
		typ, v, err := cr.Next()
		require.NoError(t, err)
		require.EqualValues(t, wire.CapsuleDatagram, typ)
		require.Equal(t, []byte{0, byte(i)}, v)
	}
}

// Queueing a reply on a TCP stream allocates nothing, queued or dropped.
func TestCapsuleQueueNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	out := newBlockingOut()
	q := newCapsuleQueue(out)
	defer q.close()
	v := append([]byte{0}, make([]byte, 1200)...)
	for range capsuleQueueLen + 2 { // warm the pool; fill the queue
		q.tryWriteDatagram(v)
	}
	require.Zero(t, testing.AllocsPerRun(1000, func() { q.tryWriteDatagram(v) }))
}

// FuzzUpgradeRequest feeds raw HTTP/1.1 requests to net/http's parser and
// the upgrade check: no panic, and what the check accepts is a GET with
// Connection: upgrade and valid, lower-cased protocol tokens.
func FuzzUpgradeRequest(f *testing.F) {
	f.Add("GET /.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\r\nHost: example.org\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n")
	f.Add("GET https://example.org/.well-known/masque/ip/*/*/ HTTP/1.1\r\nHost: example.org\r\nConnection: keep-alive, Upgrade\r\nUpgrade: connect-ip, websocket\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ,\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect udp\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		tokens, err := upgradeTokens(r)
		if err != nil {
			require.Nil(t, tokens)
			require.False(t, isUpgradeRequest(r))
			return
		}
		require.Equal(t, http.MethodGet, r.Method)
		require.True(t, headerHasToken(r.Header["Connection"], "upgrade"))
		require.NotEmpty(t, tokens)
		for _, tok := range tokens {
			require.True(t, isToken(tok), "%q", tok)
			require.Equal(t, strings.ToLower(tok), tok)
		}
	})
}

func TestUpgradeTokens(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		tokens []string
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", []string{"connect-udp"}},
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, upgrade\r\nUpgrade: Connect-IP, connect-udp\r\n\r\n", []string{"connect-ip", "connect-udp"}},
		{"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: connect-udp\r\n\r\n", nil},                              // no Connection: Upgrade
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", nil},                               // no Upgrade
		{"CONNECT x:1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", nil}, // not GET
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect/udp\r\n\r\n", nil},       // not a token
	} {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.raw)))
		require.NoError(t, err)
		tokens, err := upgradeTokens(r)
		require.Equal(t, tc.tokens, tokens, tc.raw)
		require.Equal(t, tc.tokens == nil, err != nil, tc.raw)
	}
}
