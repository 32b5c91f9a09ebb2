package packetio

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkEcho measures echo round trips through each backend: write a
// batch of requests, read every reply. One op is one packet each way.
func BenchmarkEcho(b *testing.B) {
	for _, be := range backends {
		for _, kind := range []string{"icmp4", "udp6"} {
			for _, batch := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d", be.name, kind, batch), func(b *testing.B) {
					d := be.open(b)
					defer d.Close()
					req := echoRequest(client4, host4, 1, 1, make([]byte, 64))
					if kind == "udp6" {
						req = udpPacket(netip.AddrPortFrom(client6, 1), netip.AddrPortFrom(host6, echoPort), make([]byte, 64))
					}
					pkts := make([][]byte, batch)
					for i := range pkts {
						pkts[i] = req
					}
					bufs, sizes := newBufs(d)
					b.ReportAllocs()
					b.ResetTimer()
					for done := 0; done < b.N; done += batch {
						if _, err := d.WritePackets(pkts); err != nil {
							b.Fatal(err)
						}
						for got := 0; got < batch; {
							n, err := d.ReadPackets(bufs, sizes)
							if err != nil {
								b.Fatal(err)
							}
							got += n
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
				})
			}
		}
	}
}
