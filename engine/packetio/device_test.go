package packetio

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The tests in this file hold for every queue-backed Device: the netstack
// and the responder, each with a host at host4 and host6 answering echo
// requests and UDP on echoPort.

type backend struct {
	name string
	open func(t testing.TB) Device
}

var backends = []backend{
	{"netstack", func(t testing.TB) Device {
		n, err := NewNetstack(NetstackConfig{})
		require.NoError(t, err)
		return n
	}},
	{"responder", func(t testing.TB) Device { return NewResponder(host4, host6) }},
}

func forEachBackend(t *testing.T, f func(t *testing.T, d Device)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			d := b.open(t)
			t.Cleanup(func() { require.NoError(t, d.Close()) })
			f(t, d)
		})
	}
}

// readOne reads the next packet from d, failing t if none comes within a
// few seconds (the device is then closed to unblock the read).
func readOne(t testing.TB, d Device) []byte {
	t.Helper()
	bufs, sizes := [][]byte{make([]byte, d.MTU())}, []int{0}
	timer := time.AfterFunc(5*time.Second, func() { d.Close() })
	defer timer.Stop()
	n, err := d.ReadPackets(bufs, sizes)
	require.NoError(t, err, "no packet within 5s")
	require.Equal(t, 1, n)
	return bufs[0][:sizes[0]]
}

func writeAll(t testing.TB, d Device, pkts ...[]byte) {
	t.Helper()
	n, err := d.WritePackets(pkts)
	require.NoError(t, err)
	require.Equal(t, len(pkts), n)
}

func TestDeviceEcho(t *testing.T) {
	payload := []byte("masqroute packetio echo")
	forEachBackend(t, func(t *testing.T, d Device) {
		for _, tc := range []struct{ client, host netip.Addr }{{client4, host4}, {client6, host6}} {
			t.Run("icmp"+tc.host.String(), func(t *testing.T) {
				req := echoRequest(tc.client, tc.host, 0x4d51, 9, payload)
				sent := append([]byte(nil), req...)
				writeAll(t, d, req)
				require.Equal(t, sent, req, "WritePackets modified its input")
				p := parsePacket(t, readOne(t, d))
				require.Equal(t, tc.host, p.src)
				require.Equal(t, tc.client, p.dst)
				require.True(t, p.isEchoReply(), "type %d", p.icmpType)
				require.Zero(t, p.icmpCode)
				require.Equal(t, uint16(0x4d51), p.id)
				require.Equal(t, uint16(9), p.seq)
				require.Equal(t, payload, p.payload)
				require.EqualValues(t, 64, p.ttl, "TTL/Hop Limit")
			})
			t.Run("udp"+tc.host.String(), func(t *testing.T) {
				from := netip.AddrPortFrom(tc.client, 40000)
				writeAll(t, d, udpPacket(from, netip.AddrPortFrom(tc.host, echoPort), payload))
				p := parsePacket(t, readOne(t, d))
				require.Equal(t, header.UDPProtocolNumber, p.proto)
				require.Equal(t, tc.host, p.src)
				require.Equal(t, tc.client, p.dst)
				require.Equal(t, uint16(echoPort), p.srcPort)
				require.Equal(t, uint16(40000), p.dstPort)
				require.Equal(t, payload, p.payload)
				require.EqualValues(t, 64, p.ttl, "TTL/Hop Limit")
			})
		}
	})
}

// A packet for an address the network does not have is dropped without an
// answer. Both backends process a written packet before WritePackets
// returns, so had the first packet provoked anything, it would be read
// before the reply to the second.
func TestDeviceUnknownDestinationDropped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d Device) {
		for _, tc := range []struct{ client, host, other netip.Addr }{
			{client4, host4, netip.MustParseAddr("192.0.2.99")},
			{client6, host6, netip.MustParseAddr("2001:db8::99")},
		} {
			writeAll(t, d,
				echoRequest(tc.client, tc.other, 1, 1, nil),
				udpPacket(netip.AddrPortFrom(tc.client, 1), netip.AddrPortFrom(tc.other, echoPort), nil),
				echoRequest(tc.client, tc.host, 1, 2, nil))
			p := parsePacket(t, readOne(t, d))
			require.True(t, p.isEchoReply())
			require.Equal(t, tc.host, p.src)
			require.Equal(t, uint16(2), p.seq)
		}
	})
}

func TestDeviceInvalidPacket(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d Device) {
		good := echoRequest(client4, host4, 1, 1, nil)
		for _, bad := range [][]byte{nil, {0x50, 0, 0, 0}, make([]byte, maxPacketSize+1)} {
			if len(bad) > 0 {
				bad[0] = 0x50
			}
			n, err := d.WritePackets([][]byte{good, bad, good})
			require.ErrorIs(t, err, ErrInvalidPacket)
			require.Equal(t, 1, n)
			p := parsePacket(t, readOne(t, d))
			require.True(t, p.isEchoReply())
		}
	})
}

func TestDeviceShortReadBuffers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d Device) {
		writeAll(t, d, echoRequest(client4, host4, 1, 1, nil))
		_, err := d.ReadPackets([][]byte{make([]byte, d.MTU()-1)}, []int{0})
		require.ErrorIs(t, err, io.ErrShortBuffer)
		_, err = d.ReadPackets([][]byte{make([]byte, d.MTU())}, nil)
		require.Error(t, err)
		// Nothing was consumed.
		require.Equal(t, uint16(1), parsePacket(t, readOne(t, d)).seq)
	})
}

func TestDeviceBatchRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d Device) {
		const count = 40
		pkts := make([][]byte, count)
		for i := range pkts {
			pkts[i] = echoRequest(client6, host6, 7, uint16(i), []byte{byte(i)})
		}
		writeAll(t, d, pkts...)
		bufs, sizes := newBufs(d)
		next := 0
		for next < count {
			n, err := d.ReadPackets(bufs, sizes)
			require.NoError(t, err)
			require.Positive(t, n)
			for i := range n {
				p := parsePacket(t, bufs[i][:sizes[i]])
				require.Equal(t, uint16(next), p.seq, "replies out of order")
				next++
			}
		}
	})
}

func TestDeviceCloseUnblocksRead(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			d := b.open(t)
			errc := make(chan error, 1)
			started := make(chan struct{})
			go func() {
				bufs, sizes := newBufs(d)
				close(started)
				_, err := d.ReadPackets(bufs, sizes)
				errc <- err
			}()
			<-started
			time.Sleep(10 * time.Millisecond) // let the read block
			require.NoError(t, d.Close())
			select {
			case err := <-errc:
				require.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("ReadPackets still blocked 5s after Close")
			}
			require.NoError(t, d.Close(), "second Close")
			_, err := d.WritePackets([][]byte{echoRequest(client4, host4, 1, 1, nil)})
			require.ErrorIs(t, err, net.ErrClosed)
			bufs, sizes := newBufs(d)
			_, err = d.ReadPackets(bufs, sizes)
			require.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

// One writer and one reader, as the proxy runs them; the writer never has
// more requests outstanding than the queues hold, so nothing is dropped and
// every reply must arrive, in order.
func TestDeviceConcurrentReadWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, d Device) {
		const count, window, batch = 3000, 256, 16
		credits := make(chan struct{}, window)
		for range window {
			credits <- struct{}{}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts := make([][]byte, 0, batch)
			for seq := 0; seq < count; {
				pkts = pkts[:0]
				for ; seq < count && len(pkts) < batch; seq++ {
					<-credits
					client, host := client4, host4
					if seq%2 == 1 {
						client, host = client6, host6
					}
					pkts = append(pkts, echoRequest(client, host, 1, uint16(seq), nil))
				}
				if _, err := d.WritePackets(pkts); err != nil {
					t.Errorf("WritePackets: %v", err)
					return
				}
			}
		}()
		bufs, sizes := newBufs(d)
		timer := time.AfterFunc(20*time.Second, func() { d.Close() })
		defer timer.Stop()
		for got := 0; got < count; {
			n, err := d.ReadPackets(bufs, sizes)
			require.NoError(t, err, "after %d replies", got)
			for i := range n {
				p := parsePacket(t, bufs[i][:sizes[i]])
				require.True(t, p.isEchoReply())
				require.Equal(t, uint16(got), p.seq)
				got++
				credits <- struct{}{}
			}
		}
		wg.Wait()
	})
}

func TestDeviceCloseDuringTraffic(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			d := b.open(t)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { // writer: until closed
				defer wg.Done()
				pkts := [][]byte{echoRequest(client4, host4, 1, 1, nil), echoRequest(client6, host6, 1, 1, nil)}
				for {
					if _, err := d.WritePackets(pkts); err != nil {
						if !errors.Is(err, net.ErrClosed) {
							t.Errorf("WritePackets: %v", err)
						}
						return
					}
				}
			}()
			go func() { // reader: until closed
				defer wg.Done()
				bufs, sizes := newBufs(d)
				for {
					if _, err := d.ReadPackets(bufs, sizes); err != nil {
						if !errors.Is(err, net.ErrClosed) {
							t.Errorf("ReadPackets: %v", err)
						}
						return
					}
				}
			}()
			time.Sleep(50 * time.Millisecond)
			require.NoError(t, d.Close())
			wg.Wait()
		})
	}
}
