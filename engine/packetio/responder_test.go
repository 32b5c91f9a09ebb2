package packetio

import (
	"net"
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestResponderEchoAnyUDPPort(t *testing.T) {
	r := NewResponder(host4, netip.MustParseAddr("::ffff:203.0.113.1"))
	writeAll(t, r, udpPacket(netip.AddrPortFrom(client4, 53000), netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), 443), []byte("q")))
	p := parsePacket(t, readOne(t, r))
	require.Equal(t, netip.MustParseAddr("203.0.113.1"), p.src)
	require.Equal(t, uint16(443), p.srcPort)
	require.Equal(t, uint16(53000), p.dstPort)
}

// An IPv4 UDP datagram without a checksum is answered, with one.
func TestResponderUDPv4NoChecksum(t *testing.T) {
	r := NewResponder(host4)
	req := udpPacket(netip.AddrPortFrom(client4, 1), netip.AddrPortFrom(host4, 2), []byte("no sum"))
	header.UDP(req[header.IPv4MinimumSize:]).SetChecksum(0)
	writeAll(t, r, req)
	p := parsePacket(t, readOne(t, r)) // checks the reply's checksum
	require.Equal(t, []byte("no sum"), p.payload)
}

// Trailing bytes beyond the IP length (link padding) are not echoed.
func TestResponderIgnoresPadding(t *testing.T) {
	r := NewResponder(host6)
	req := append(echoRequest(client6, host6, 1, 1, []byte("abc")), 0, 0, 0)
	writeAll(t, r, req)
	p := parsePacket(t, readOne(t, r))
	require.Equal(t, []byte("abc"), p.payload)
}

func TestResponderDropsAndCounts(t *testing.T) {
	r := NewResponder(host4, host6)

	badIPSum := echoRequest(client4, host4, 1, 1, nil)
	badIPSum[10] ^= 0xff
	badICMPSum := echoRequest(client4, host4, 1, 1, []byte("x"))
	badICMPSum[len(badICMPSum)-1] ^= 0xff
	badUDP6Sum := udpPacket(netip.AddrPortFrom(client6, 1), netip.AddrPortFrom(host6, 2), []byte("x"))
	badUDP6Sum[len(badUDP6Sum)-1] ^= 0xff
	truncated := echoRequest(client6, host6, 1, 1, []byte("xyz"))
	truncated = truncated[:len(truncated)-1]
	shortUDP := udpPacket(netip.AddrPortFrom(client4, 1), netip.AddrPortFrom(host4, 2), []byte("xy"))
	header.UDP(shortUDP[header.IPv4MinimumSize:]).SetLength(9)

	echoReply := echoRequest(client4, host4, 1, 1, nil)
	header.ICMPv4(echoReply[header.IPv4MinimumSize:]).SetType(header.ICMPv4EchoReply)
	echoReply = ipPacket(client4, host4, header.ICMPv4ProtocolNumber, echoReply[header.IPv4MinimumSize:], 2)
	tcpSyn := ipPacket(client6, host6, header.TCPProtocolNumber, make([]byte, header.TCPMinimumSize), -1)
	fragment := echoRequest(client4, host4, 1, 1, nil)
	header.IPv4(fragment).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	header.IPv4(fragment).SetChecksum(0)
	header.IPv4(fragment).SetChecksum(^header.IPv4(fragment).CalculateChecksum())
	hopByHop := echoRequest(client6, host6, 1, 1, nil)
	hopByHop[6] = 0 // Next Header: Hop-by-Hop Options
	multicastSrc := echoRequest(netip.MustParseAddr("224.0.0.1"), host4, 1, 1, nil)
	unspecifiedSrc := echoRequest(netip.IPv6Unspecified(), host6, 1, 1, nil)
	tooBig := udpPacket(netip.AddrPortFrom(client4, 1), netip.AddrPortFrom(host4, 2), make([]byte, DefaultMTU))

	notLocal := [][]byte{
		echoRequest(client4, netip.MustParseAddr("192.0.2.2"), 1, 1, nil),
		udpPacket(netip.AddrPortFrom(client6, 1), netip.AddrPortFrom(client6, 2), nil),
	}
	unsupported := [][]byte{echoReply, tcpSyn, fragment, hopByHop, multicastSrc, unspecifiedSrc, tooBig}
	malformed := [][]byte{badIPSum, badICMPSum, badUDP6Sum, truncated, shortUDP, {0x45}, {0x60, 0}}

	var all [][]byte
	all = append(all, notLocal...)
	all = append(all, unsupported...)
	all = append(all, malformed...)
	writeAll(t, r, all...)
	require.NoError(t, r.Inject(echoRequest(host4, client4, 5, 5, nil)))

	// Nothing but the injected packet is queued.
	p := parsePacket(t, readOne(t, r))
	require.Equal(t, uint16(5), p.seq)
	require.Equal(t, ResponderStats{
		Written:     uint64(len(all)),
		NotLocal:    uint64(len(notLocal)),
		Unsupported: uint64(len(unsupported)),
		Malformed:   uint64(len(malformed)),
		Injected:    1,
		Read:        1,
	}, r.Stats())
}

func TestResponderQueueOverflow(t *testing.T) {
	r := NewResponder(host4)
	const sent = responderQueueLen + 10
	for i := range sent {
		writeAll(t, r, echoRequest(client4, host4, 1, uint16(i), nil))
	}
	require.Error(t, r.Inject(echoRequest(host4, client4, 1, 1, nil)), "queue full")
	st := r.Stats()
	require.EqualValues(t, responderQueueLen, st.EchoReplies)
	require.EqualValues(t, 10, st.QueueDrops)

	bufs, sizes := newBufs(r)
	for next := 0; next < responderQueueLen; {
		n, err := r.ReadPackets(bufs, sizes)
		require.NoError(t, err)
		for i := range n {
			require.Equal(t, uint16(next), parsePacket(t, bufs[i][:sizes[i]]).seq)
			next++
		}
	}
	// Room again.
	writeAll(t, r, echoRequest(client4, host4, 1, 77, nil))
	require.Equal(t, uint16(77), parsePacket(t, readOne(t, r)).seq)
}

func TestResponderInject(t *testing.T) {
	r := NewResponder(host4)
	require.ErrorIs(t, r.Inject([]byte{0x10}), ErrInvalidPacket)
	require.Error(t, r.Inject(make([]byte, DefaultMTU+1)), "bigger than the MTU")
	pkt := udpPacket(netip.AddrPortFrom(host4, 1), netip.AddrPortFrom(client4, 2), []byte("unprompted"))
	require.NoError(t, r.Inject(pkt))
	require.Equal(t, pkt, readOne(t, r))
	r.Close()
	require.ErrorIs(t, r.Inject(pkt), net.ErrClosed)
}

func TestResponderInvalidAddressPanics(t *testing.T) {
	require.Panics(t, func() { NewResponder(netip.Addr{}) })
}

// The responder's steady state, write and read, allocates nothing.
func TestResponderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := NewResponder(host4, host6)
	bufs, sizes := newBufs(r)
	pkts := [][]byte{
		echoRequest(client4, host4, 1, 1, make([]byte, 56)),
		echoRequest(client6, host6, 1, 1, make([]byte, 56)),
		udpPacket(netip.AddrPortFrom(client4, 1), netip.AddrPortFrom(host4, 2), make([]byte, 56)),
		udpPacket(netip.AddrPortFrom(client6, 1), netip.AddrPortFrom(host6, 2), make([]byte, 56)),
		tcpPacketForAllocs,
	}
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := r.WritePackets(pkts); err != nil {
			t.Fatal(err)
		}
		if n, err := r.ReadPackets(bufs, sizes); err != nil || n != 4 {
			t.Fatal(n, err)
		}
	})
	require.Zero(t, allocs)
}

var tcpPacketForAllocs = ipPacket(client4, host4, header.TCPProtocolNumber, make([]byte, header.TCPMinimumSize), -1)

// ReadPackets blocks until a reply is queued and fails as soon as Close is
// called, without a timing assumption: synctest.Wait returns only once the
// reader is durably blocked.
func TestResponderBlockingSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewResponder(host4)
		type result struct {
			n   int
			err error
		}
		results := make(chan result, 2)
		go func() {
			bufs, sizes := newBufs(r)
			for range 2 {
				n, err := r.ReadPackets(bufs, sizes)
				results <- result{n, err}
			}
		}()
		synctest.Wait()
		require.Empty(t, results, "ReadPackets returned with nothing queued")

		writeAll(t, r, echoRequest(client4, host4, 1, 1, nil))
		synctest.Wait()
		require.Equal(t, result{n: 1}, <-results)
		require.Empty(t, results)

		r.Close()
		synctest.Wait()
		res := <-results
		require.ErrorIs(t, res.err, net.ErrClosed)
	})
}
