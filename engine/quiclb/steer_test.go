package quiclb

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

var (
	sidA = ServerID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8}
	sidB = ServerID{0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8}
)

// cidFor builds an ID by hand, as a peer would receive it.
func cidFor(sid ServerID, transport byte) []byte {
	b := make([]byte, 16)
	b[0] = FirstOctet(0)
	copy(b[1:9], sid[:])
	b[9] = transport
	copy(b[10:], []byte{9, 8, 7, 6, 5, 4})
	return b
}

// shortPacket is a 1-RTT packet to dcid with some protected payload.
func shortPacket(dcid []byte) []byte {
	p := append([]byte{0x43}, dcid...)
	return append(p, make([]byte, 30)...)
}

// Long header packet types of QUIC v1 (RFC 9000 §17.2).
const (
	typeInitial   = 0
	type0RTT      = 1
	typeHandshake = 2
)

func longPacket(typ byte, dcid, scid []byte) []byte {
	p := []byte{0xc0 | typ<<4, 0, 0, 0, 1, byte(len(dcid))}
	p = append(p, dcid...)
	p = append(p, byte(len(scid)))
	p = append(p, scid...)
	return append(p, make([]byte, 40)...)
}

func runProgram(t *testing.T, prog []bpf.RawInstruction, pkt []byte) uint32 {
	t.Helper()
	ins, ok := bpf.Disassemble(prog)
	require.True(t, ok, "program does not disassemble")
	vm, err := bpf.NewVM(ins)
	require.NoError(t, err)
	out, err := vm.Run(pkt)
	require.NoError(t, err)
	return uint32(out)
}

func TestProgramSteersOneServer(t *testing.T) {
	prog, err := Program([]Route{{ServerID: sidA, Slots: []int{0, 1, 2, 3}}})
	require.NoError(t, err)
	random16 := []byte("client-chosen-16")
	for _, tc := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"short header, transport 0", shortPacket(cidFor(sidA, 0)), 0},
		{"short header, transport 3", shortPacket(cidFor(sidA, 3)), 3},
		{"short header, transport past the group", shortPacket(cidFor(sidA, 4)), Fallback},
		{"short header, another server", shortPacket(cidFor(sidB, 1)), Fallback},
		{"handshake", longPacket(typeHandshake, cidFor(sidA, 2), []byte{1, 2, 3, 4}), 2},
		{"client's later Initial to the server's ID", longPacket(typeInitial, cidFor(sidA, 1), []byte{1, 2, 3, 4}), 1},
		{"first Initial, client's 8-byte DCID", longPacket(typeInitial, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil), Fallback},
		{"first Initial, client's 16-byte DCID", longPacket(typeInitial, random16, nil), Fallback},
		{"0-RTT, client's DCID", longPacket(type0RTT, random16, []byte{1}), Fallback},
		{"long header, 20-byte DCID", longPacket(typeHandshake, append(cidFor(sidA, 1), 0, 0, 0, 0), nil), Fallback},
		{"too short for a short header ID", shortPacket(cidFor(sidA, 1))[:16], Fallback},
		{"short header, just long enough", shortPacket(cidFor(sidA, 1))[:17], 1},
		{"too short for a long header ID", longPacket(typeHandshake, cidFor(sidA, 1), nil)[:21], Fallback},
		{"long header, just long enough", longPacket(typeHandshake, cidFor(sidA, 1), nil)[:22], 1},
		{"one byte", []byte{0x40}, Fallback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, runProgram(t, prog, tc.pkt))
		})
	}
}

func TestProgramSteersSeveralServers(t *testing.T) {
	// A's transports at slots 0 and 2, B's at 3, 1 and 4: the order
	// after some instance left.
	prog, err := Program([]Route{{ServerID: sidA, Slots: []int{0, 2}}, {ServerID: sidB, Slots: []int{3, 1, 4}}})
	require.NoError(t, err)
	for tr, want := range []uint32{0, 2, Fallback} {
		require.Equal(t, want, runProgram(t, prog, shortPacket(cidFor(sidA, byte(tr)))), "A transport %d", tr)
	}
	for tr, want := range []uint32{3, 1, 4, Fallback} {
		require.Equal(t, want, runProgram(t, prog, shortPacket(cidFor(sidB, byte(tr)))), "B transport %d", tr)
		require.Equal(t, want, runProgram(t, prog, longPacket(typeHandshake, cidFor(sidB, byte(tr)), nil)), "B transport %d, long", tr)
	}
	require.Equal(t, uint32(Fallback), runProgram(t, prog, shortPacket(cidFor(ServerID{}, 0))))
}

func TestProgramRandomPackets(t *testing.T) {
	// Whatever arrives, the program returns a slot of a route or
	// Fallback, and never errs.
	prog, err := Program([]Route{{ServerID: sidA, Slots: []int{0, 1}}})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		pkt := make([]byte, r.IntN(64))
		for i := range pkt {
			pkt[i] = byte(r.Uint32())
		}
		if len(pkt) > 10 && r.IntN(2) == 0 {
			copy(pkt[2:], sidA[:]) // a short header with our server ID
		}
		got := runProgram(t, prog, pkt)
		require.True(t, got == 0 || got == 1 || got == Fallback, "got %d for %x", got, pkt)
	}
}

func TestProgramLimits(t *testing.T) {
	_, err := Program(nil)
	require.Error(t, err)
	_, err = Program([]Route{{ServerID: sidA}})
	require.Error(t, err)
	// 256 transports of one server: a contiguous route is short.
	slots := make([]int, 256)
	for i := range slots {
		slots[i] = i
	}
	_, err = Program([]Route{{ServerID: sidA, Slots: slots}})
	require.NoError(t, err)
	// Permuted, it needs a jump table past a conditional jump's reach.
	slices.Reverse(slots)
	_, err = Program([]Route{{ServerID: sidA, Slots: slots}, {ServerID: sidB, Slots: []int{256}}})
	require.Error(t, err)
}

func FuzzProgram(f *testing.F) {
	prog, err := Program([]Route{{ServerID: sidA, Slots: []int{0, 1}}, {ServerID: sidB, Slots: []int{3, 2}}})
	require.NoError(f, err)
	ins, _ := bpf.Disassemble(prog)
	vm, err := bpf.NewVM(ins)
	require.NoError(f, err)
	f.Add(shortPacket(cidFor(sidA, 1)))
	f.Add(longPacket(typeHandshake, cidFor(sidB, 0), nil))
	f.Add(longPacket(typeInitial, []byte("0123456789abcdef"), nil))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out, err := vm.Run(pkt)
		if err != nil {
			t.Fatal(err)
		}
		if got := uint32(out); got > 3 && got != Fallback {
			t.Fatalf("slot %d for %x", got, pkt)
		}
	})
}
