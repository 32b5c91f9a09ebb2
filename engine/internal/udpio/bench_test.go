package udpio

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// batchIO is one way of moving batches over a connected socket, so that
// BenchmarkEcho can compare this package with the alternatives.
type batchIO interface {
	write(bufs [][]byte) error
	read(bufs [][]byte, sizes []int) (int, error)
}

// connIO is this package: recvmmsg/sendmmsg ("mmsg") or one
// recvmsg/sendmsg per datagram ("single").
type connIO struct{ c *Conn }

func (c connIO) write(bufs [][]byte) error {
	_, _, err := c.c.WriteBatch(bufs)
	return err
}

func (c connIO) read(bufs [][]byte, sizes []int) (int, error) {
	n, _, err := c.c.ReadBatch(bufs, sizes)
	return n, err
}

// netIO is net.UDPConn's Read and Write, one datagram per call.
type netIO struct{ uc *net.UDPConn }

func (c netIO) write(bufs [][]byte) error {
	for _, b := range bufs {
		if _, err := c.uc.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (c netIO) read(bufs [][]byte, sizes []int) (int, error) {
	n, err := c.uc.Read(bufs[0])
	sizes[0] = n
	return 1, err
}

// xnetIO is golang.org/x/net/ipv4's ReadBatch and WriteBatch, with its
// Messages made once.
type xnetIO struct {
	pc     *ipv4.PacketConn
	rd, wr []ipv4.Message
	inner  [][]byte
}

func newXnetIO(uc *net.UDPConn) *xnetIO {
	x := &xnetIO{
		pc:    ipv4.NewPacketConn(uc),
		rd:    make([]ipv4.Message, IdealBatchSize),
		wr:    make([]ipv4.Message, IdealBatchSize),
		inner: make([][]byte, 2*IdealBatchSize),
	}
	for i := range IdealBatchSize {
		x.rd[i].Buffers = x.inner[i : i+1 : i+1]
		x.wr[i].Buffers = x.inner[IdealBatchSize+i : IdealBatchSize+i+1 : IdealBatchSize+i+1]
	}
	return x
}

func (x *xnetIO) write(bufs [][]byte) error {
	for i, b := range bufs {
		x.wr[i].Buffers[0] = b
	}
	for sent := 0; sent < len(bufs); {
		n, err := x.pc.WriteBatch(x.wr[sent:len(bufs)], 0)
		if err != nil {
			return err
		}
		sent += n
	}
	return nil
}

func (x *xnetIO) read(bufs [][]byte, sizes []int) (int, error) {
	k := min(len(bufs), len(x.rd))
	for i := range k {
		x.rd[i].Buffers[0] = bufs[i]
	}
	n, err := x.pc.ReadBatch(x.rd[:k], 0)
	for i := range n {
		sizes[i] = x.rd[i].N
	}
	return n, err
}

// BenchmarkEcho bounces batches of 1200-byte datagrams between two
// loopback sockets: a writes a batch, b reads all of it and writes it
// back, a reads it all. dgrams/s counts datagrams received, both ways;
// cpu-ns/dgram is the process's user+system CPU time per datagram
// received, which a loaded machine disturbs less than wall time.
//
//	mmsg   this package, recvmmsg/sendmmsg
//	single this package, one recvmsg/sendmsg per datagram (the fallback)
//	xnet   golang.org/x/net/ipv4 PacketConn.ReadBatch/WriteBatch
//	net    net.UDPConn Read/Write
func BenchmarkEcho(b *testing.B) {
	for _, path := range []string{"mmsg", "single", "xnet", "net"} {
		for _, size := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", path, size), func(b *testing.B) {
				a, z := newPair(b, "udp4", path == "single")
				var ea, ez batchIO
				switch path {
				case "mmsg", "single":
					ea, ez = connIO{a}, connIO{z}
				case "xnet":
					ea, ez = newXnetIO(a.uc), newXnetIO(z.uc)
				case "net":
					ea, ez = netIO{a.uc}, netIO{z.uc}
				}
				benchEcho(b, ea, ez, size)
			})
		}
	}
}

func benchEcho(b *testing.B, a, z batchIO, size int) {
	out := datagrams(rand.New(rand.NewPCG(9, 9)), size, 1200)
	for i := range out {
		out[i] = out[i][:cap(out[i])]
	}
	var pool Pool
	in := make([][]byte, size)
	for i := range in {
		in[i] = pool.Get().Payload()
	}
	sizes := make([]int, size)
	back := make([][]byte, size)

	readAll := func(c batchIO) {
		for got := 0; got < size; {
			n, err := c.read(in[got:], sizes[got:])
			if err != nil {
				b.Fatal(err)
			}
			for i := got; i < got+n; i++ {
				back[i] = in[i][:sizes[i]]
			}
			got += n
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	start := time.Now()
	for b.Loop() {
		if err := a.write(out); err != nil {
			b.Fatal(err)
		}
		readAll(z)
		if err := z.write(back); err != nil {
			b.Fatal(err)
		}
		readAll(a)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	dgrams := float64(2 * size * b.N)
	b.ReportMetric(dgrams/elapsed.Seconds(), "dgrams/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/dgrams, "cpu-ns/dgram")
}

// BenchmarkWriteBatch sends a batch of 16 datagrams of 1200 bytes from one
// loopback socket to another and reads all 16 back on the same goroutine
// before the next batch (closed loop: the receive queue never overflows,
// so no datagram is dropped, which would make a send look cheaper than
// it is). The read side is the same in every variant, so differences are
// the send side's. ns/dgram is wall time per datagram; cpu-ns/dgram the
// process's CPU per datagram, kernel included; syscalls/dgram and
// gso-msgs/dgram, send side, come from Stats.
//
//	gso    WriteBatch as it is: one GSO message per batch, one sendmmsg
//	nogso  GSO off for the Conn: 16 messages in one sendmmsg
//	single one sendmsg per datagram (the no-sendmmsg fallback), no GSO
func BenchmarkWriteBatch(b *testing.B) {
	const batch, size = 16, 1200
	for _, path := range []string{"gso", "nogso", "single"} {
		b.Run(fmt.Sprintf("%s/%dx%d", path, batch, size), func(b *testing.B) {
			a, z := newPair(b, "udp4", false)
			switch path {
			case "gso":
				if !a.gsoAllowed() {
					b.Skip("GSO is off on this host")
				}
			case "single":
				a.forceSingle()
				fallthrough
			default:
				a.forceNoGSO()
			}
			out := make([][]byte, batch)
			for i := range out {
				out[i] = make([]byte, size)
			}
			in := make([][]byte, batch)
			for i := range in {
				in[i] = make([]byte, MaxPayload)
			}
			sizes := make([]int, batch)
			if err := z.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			s0, cpu0 := Stats(), cpuTime()
			start := time.Now()
			for b.Loop() {
				if _, _, err := a.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < batch; {
					n, _, err := z.ReadBatch(in[got:], sizes[got:])
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			elapsed, cpu, s1 := time.Since(start), cpuTime()-cpu0, Stats()
			dgrams := float64(batch * b.N)
			b.ReportMetric(float64(elapsed.Nanoseconds())/dgrams, "ns/dgram")
			b.ReportMetric(float64(cpu.Nanoseconds())/dgrams, "cpu-ns/dgram")
			b.ReportMetric(float64(s1.WriteSyscalls-s0.WriteSyscalls)/dgrams, "syscalls/dgram")
			b.ReportMetric(float64(s1.GSOSends-s0.GSOSends)/dgrams, "gso-msgs/dgram")
		})
	}
}
