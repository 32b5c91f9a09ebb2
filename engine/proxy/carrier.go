package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqroute/masqroute/engine/internal/bufpool"
	"github.com/masqroute/masqroute/engine/internal/h3"
	"github.com/masqroute/masqroute/engine/internal/wire"
)

// Carriers: what a tunnel request arrived on.
//
//	h3  HTTP/3 on QUIC (conn.go): extended CONNECT on a request stream;
//	    datagrams as QUIC DATAGRAM frames, or DATAGRAM capsules.
//	h2  HTTP/2 on TLS over TCP (tcpserve.go, h2carrier.go): extended
//	    CONNECT (RFC 8441); datagrams as DATAGRAM capsules on the stream.
//	h1  HTTP/1.1 on TLS over TCP (h1carrier.go): GET with Upgrade (RFC 9298
//	    §3.2, RFC 9484 §3.2), 101, then capsules on the connection.
//
// From the request on there is one code path, serveMASQUE: the same kinds,
// templates, auth, policy, limits, router and counters. A carrier only
// answers what serveMASQUE asks of the connection (a carrier) and of the
// request's stream (a tunnelStream). Replies are framed once, in sender.go;
// on a TCP carrier the sender hands each to the stream's capsuleQueue
// instead of QUIC, never waiting on the client.

// A carrier is the transport under a proxyConn.
type carrier interface {
	// protocol is what MASQUE sees of r: its method (an HTTP/1.1 upgrade
	// counts as CONNECT) and its :protocol ("" for none).
	protocol(r *http.Request) (method, proto string)
	// requestStream returns the tunnel stream of r, which w answers.
	requestStream(w http.ResponseWriter, r *http.Request) (tunnelStream, bool)
	// connectStream returns the byte stream of a classic CONNECT r
	// (connecttcp.go), which w answers, or false when the carrier has
	// none for it.
	connectStream(w http.ResponseWriter, r *http.Request) (byteStream, bool)
	// peerDatagrams reports whether replies may go as HTTP/3 datagrams;
	// ok is false when the carrier could not learn it in time (the
	// client's SETTINGS did not come within HeaderTimeout or ctx).
	peerDatagrams(ctx context.Context) (datagrams, ok bool)
	// closeNow closes the connection at once (Proxy.Close).
	closeNow()
	// goAway starts a graceful shutdown of the connection.
	goAway()
}

// A tunnelStream is a tunnel's request stream on its carrier. h3.Stream is
// one.
type tunnelStream interface {
	// StreamID keys the tunnel in its connection's router; its quarter is
	// the Quarter Stream ID of the tunnel's HTTP/3 datagrams.
	StreamID() quic.StreamID
	// CancelRead stops the client's side: a blocked read of the request
	// body returns.
	CancelRead(code wire.ErrorCode)
	// CancelWrite resets the response side.
	CancelWrite(code wire.ErrorCode)
}

// A datagramWriter is a tunnelStream that carries the tunnel's replies in
// DATAGRAM capsules itself, without blocking: the TCP carriers' streams.
type datagramWriter interface {
	// tryWriteDatagram queues one DATAGRAM capsule with value v (context
	// ID and payload) toward the client, or fails at once: with
	// errStreamBlocked when the stream is backed up, net.ErrClosed once
	// the tunnel has ended. It copies v.
	tryWriteDatagram(v []byte) error
}

// errStreamBlocked: the TCP stream toward the client is backed up (flow
// control, head-of-line blocking), so the reply was dropped; counted as
// return_stream_blocked.
var errStreamBlocked = errors.New("masqroute: stream toward the client is backed up")

// h3Carrier is HTTP/3 on the proxyConn's QUIC connection.
type h3Carrier proxyConn

func (c *h3Carrier) protocol(r *http.Request) (string, string) { return r.Method, r.Proto }

func (c *h3Carrier) requestStream(_ http.ResponseWriter, r *http.Request) (tunnelStream, bool) {
	return h3.RequestStream(r)
}

func (c *h3Carrier) connectStream(w http.ResponseWriter, r *http.Request) (byteStream, bool) {
	str, ok := h3.RequestStream(r)
	if !ok {
		return nil, false
	}
	return &h3TCPStream{body: r.Body, w: w, str: str}, true
}

func (c *h3Carrier) peerDatagrams(ctx context.Context) (bool, bool) {
	pc := (*proxyConn)(c)
	if !pc.waitSettings(ctx) {
		return false, false
	}
	return pc.datagrams && pc.h3.Settings().Datagram, true
}

func (c *h3Carrier) closeNow() {
	c.qc.CloseWithError(quic.ApplicationErrorCode(wire.ErrCodeNoError), "proxy shutting down")
}

func (c *h3Carrier) goAway() {
	if hc := c.h3ready.Load(); hc != nil {
		hc.GoAway()
	}
}

// capsuleQueueLen bounds the DATAGRAM capsules waiting for one TCP stream:
// a burst's worth while the writer flushes. Past it, replies are dropped
// (return_stream_blocked): a stream that stays backed up holds at most this
// many, whatever the client does.
const capsuleQueueLen = 128

// A capsuleBuf holds one queued capsule. 4 KiB (so a stalled stream holds
// at most 512 KiB): a 1500-byte payload (or a
// CONNECT-IP packet) with room to spare; a larger one is return_oversize.
type capsuleBuf struct {
	bufpool.Flag
	n    int
	data [4096 - 32]byte
}

var capsuleBufs bufpool.Pool[capsuleBuf, *capsuleBuf]

// A capsuleQueue carries one TCP stream's DATAGRAM capsules to the client
// on a goroutine of its own (routineWriteCapsules), so that a stream held
// by flow control or TCP stalls that goroutine alone, never the
// connection's sender. The queue is bounded (capsuleQueueLen); when it is
// full tryWriteDatagram drops the capsule and says so (errStreamBlocked).
//
// Writes go through out, which serializes them with the request's own
// capsule writes (Request.WriteCapsule) on the same stream.
type capsuleQueue struct {
	out    capsuleOut
	ch     chan *capsuleBuf
	stop   chan struct{} // closed by close: write what is queued and exit
	exited chan struct{}
	closed atomic.Bool
	once   sync.Once
}

// A capsuleOut is where a stream's capsules go: the HTTP/2 response body,
// or the upgraded HTTP/1.1 connection.
type capsuleOut interface {
	// write writes b (whole capsules) without flushing.
	write(b []byte) error
	// flush sends what was written.
	flush() error
	// unblock makes a write or flush blocked on the client fail now.
	unblock()
}

func newCapsuleQueue(out capsuleOut) *capsuleQueue {
	q := &capsuleQueue{out: out, ch: make(chan *capsuleBuf, capsuleQueueLen),
		stop: make(chan struct{}), exited: make(chan struct{})}
	go q.routineWriteCapsules()
	return q
}

func (q *capsuleQueue) tryWriteDatagram(v []byte) error {
	if q.closed.Load() {
		return net.ErrClosed
	}
	if 1+quicvarint.Len(uint64(len(v)))+len(v) > len(capsuleBuf{}.data) { // type 0x00 takes one byte
		return errCapsuleTooLarge
	}
	b := capsuleBufs.Get()
	b.n = len(wire.AppendCapsule(b.data[:0], wire.CapsuleDatagram, v))
	select {
	case q.ch <- b:
		return nil
	default:
		capsuleBufs.Put(b)
		return errStreamBlocked
	}
}

// errCapsuleTooLarge: a reply too large for a queued capsule
// (return_oversize).
var errCapsuleTooLarge = &quic.DatagramTooLargeError{MaxDatagramPayloadSize: int64(len(capsuleBuf{}.data))}

// routineWriteCapsules writes the queued capsules, flushing once per burst:
// it takes what is queued without waiting, then flushes.
func (q *capsuleQueue) routineWriteCapsules() {
	defer close(q.exited)
	var err error
	for {
		var b *capsuleBuf
		select {
		case b = <-q.ch:
		case <-q.stop:
			q.drain(err)
			return
		}
		for b != nil {
			if err == nil {
				err = q.out.write(b.data[:b.n])
			}
			capsuleBufs.Put(b)
			select {
			case b = <-q.ch:
			default:
				b = nil
			}
		}
		if err == nil {
			err = q.out.flush()
		}
		// After an error the stream is dead: what comes is discarded
		// until close.
	}
}

// drain writes what is still queued at close (unless the stream failed).
func (q *capsuleQueue) drain(err error) {
	for {
		select {
		case b := <-q.ch:
			if err == nil {
				err = q.out.write(b.data[:b.n])
			}
			capsuleBufs.Put(b)
		default:
			if err == nil {
				q.out.flush()
			}
			return
		}
	}
}

// capsuleDrainTimeout is how long close lets the writer finish what is
// queued before it cuts a stalled stream off.
const capsuleDrainTimeout = 100 * time.Millisecond

// close stops the queue: later tryWriteDatagram calls fail (net.ErrClosed), what is queued
// is written, and close returns once the writer has exited. A writer stuck
// on a client that does not read is unblocked (its stream is then reset or
// its connection closed). It is idempotent.
func (q *capsuleQueue) close() {
	q.once.Do(func() {
		q.closed.Store(true)
		close(q.stop)
		t := time.NewTimer(capsuleDrainTimeout)
		defer t.Stop()
		select {
		case <-q.exited:
		case <-t.C:
			q.out.unblock()
			<-q.exited
		}
	})
}
