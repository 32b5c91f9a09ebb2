package quiclb

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Steering: the classic BPF program a reuseport group runs for every
// datagram (SO_ATTACH_REUSEPORT_CBPF). The kernel runs it on the UDP payload
// and takes its result as an index into the group's sockets, in the order
// they joined; an index past the last socket makes the kernel fall back to
// its 4-tuple hash (socket(7); net/core/sock_reuseport.c run_bpf_filter,
// verified on real sockets in reuseport_linux_test.go).
//
// The program finds the destination connection ID: at offset 1 of a short
// header packet (its length is the server's, CIDLen), or at offset 6 of a
// long header packet whose DCID length octet (offset 5) says CIDLen. If
// octets 1–8 of that ID are the server ID of a route and octet 9 is one of
// its transports, it returns that transport's slot. Everything else falls
// back: Initial and 0-RTT packets carry the client's random DCID until the
// server's first reply (a client-chosen 16-byte DCID matches a server ID
// with probability 2^-64), IDs of servers not in the table, packets too short
// to hold an ID. A client's later Initials and its Handshake packets carry
// the server's ID and are steered like short-header packets, so a
// connection's packets reach its transport from the server's first reply on.
//
// One program serves the whole group, across processes, and the last one
// attached wins.

// A Route maps one server ID's transports to socket slots: transport t
// is served by the socket at Slots[t] in the reuseport group.
type Route struct {
	ServerID ServerID
	Slots    []int
}

// Fallback is what the program returns for a packet it does not steer: past
// any group's last slot, so the kernel hashes the 4-tuple instead.
const Fallback = 0xffffffff

// packet offsets the program reads
const (
	shortDCID   = 1 // short header: DCID right after the first octet
	longDCIDLen = 5 // long header: first octet, 4-octet version, DCID length
	longDCID    = 6
)

// maxProgram is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxProgram = 4096

// Program assembles the steering program for routes.
func Program(routes []Route) ([]bpf.RawInstruction, error) {
	if len(routes) == 0 {
		return nil, errors.New("quiclb: no routes to steer")
	}
	var a asm
	// A = first octet; the long-header bit picks where the DCID is.
	a.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.jump(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x80}, "long", "short")

	a.label("short")
	a.op(bpf.LoadExtension{Num: bpf.ExtLen})
	a.jump(bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: shortDCID + CIDLen}, "", "fallback")
	a.op(bpf.LoadConstant{Dst: bpf.RegX, Val: shortDCID})
	a.jump(bpf.Jump{}, "routes", "")

	a.label("long")
	a.op(bpf.LoadExtension{Num: bpf.ExtLen})
	a.jump(bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: longDCID + CIDLen}, "", "fallback")
	a.op(bpf.LoadAbsolute{Off: longDCIDLen, Size: 1})
	a.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: CIDLen}, "", "fallback")
	a.op(bpf.LoadConstant{Dst: bpf.RegX, Val: longDCID})

	// X = the DCID's offset from here on.
	a.label("routes")
	for i, r := range routes {
		if len(r.Slots) == 0 || len(r.Slots) > MaxTransports {
			return nil, fmt.Errorf("quiclb: route %s has %d transports", r.ServerID, len(r.Slots))
		}
		next := fmt.Sprintf("route%d", i+1)
		if i == len(routes)-1 {
			next = "fallback"
		}
		a.op(bpf.LoadIndirect{Off: serverIDOffset, Size: 4})
		a.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(r.ServerID[:4])}, "", next)
		a.op(bpf.LoadIndirect{Off: serverIDOffset + 4, Size: 4})
		a.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(r.ServerID[4:])}, "", next)
		a.op(bpf.LoadIndirect{Off: transportOffset, Size: 1})
		if contiguous(r.Slots) {
			// The common case, one process: slot = first + transport.
			a.jump(bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(len(r.Slots))}, "", "fallback")
			a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: uint32(r.Slots[0])})
			a.op(bpf.RetA{})
		} else {
			for t, slot := range r.Slots {
				skip := fmt.Sprintf("route%d.%d", i, t+1)
				a.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(t)}, "", skip)
				a.op(bpf.RetConstant{Val: uint32(slot)})
				a.label(skip)
			}
			a.jump(bpf.Jump{}, "fallback", "")
		}
		if i < len(routes)-1 {
			a.label(next)
		}
	}
	a.label("fallback")
	a.op(bpf.RetConstant{Val: Fallback})
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(prog) > maxProgram {
		return nil, fmt.Errorf("quiclb: %d routes make a program of %d instructions, over the kernel's %d", len(routes), len(prog), maxProgram)
	}
	return prog, nil
}

// contiguous reports whether slots are first, first+1, …
func contiguous(slots []int) bool {
	for i, s := range slots {
		if s != slots[0]+i {
			return false
		}
	}
	return true
}

// asm is a classic BPF assembler with labels: conditional jumps name their
// targets ("" = the next instruction) and assemble resolves them.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at              int
	onTrue, onFalse string
}

func (a *asm) op(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = make(map[string]int)
	}
	a.labels[name] = len(a.ins)
}

// jump adds a Jump (onTrue is its target) or a JumpIf.
func (a *asm) jump(i bpf.Instruction, onTrue, onFalse string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), onTrue: onTrue, onFalse: onFalse})
	a.ins = append(a.ins, i)
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	skip := func(from int, label string) (uint32, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok {
			return 0, fmt.Errorf("quiclb: no label %q", label)
		}
		return uint32(to - from - 1), nil
	}
	for _, f := range a.fixups {
		t, err := skip(f.at, f.onTrue)
		if err != nil {
			return nil, err
		}
		e, err := skip(f.at, f.onFalse)
		if err != nil {
			return nil, err
		}
		switch j := a.ins[f.at].(type) {
		case bpf.Jump:
			j.Skip = t
			a.ins[f.at] = j
		case bpf.JumpIf:
			if t > 255 || e > 255 {
				return nil, errors.New("quiclb: steering program too long for a conditional jump")
			}
			j.SkipTrue, j.SkipFalse = uint8(t), uint8(e)
			a.ins[f.at] = j
		}
	}
	return bpf.Assemble(a.ins)
}
