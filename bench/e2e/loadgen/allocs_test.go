package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nopFlows takes every datagram and never replies.
type nopFlows struct{}

func (nopFlows) Send(int, []byte) error { return nil }
func (nopFlows) Readers() []Reader      { return nil }
func (nopFlows) Probe() Probe           { return nil }
func (nopFlows) Close() error           { return nil }

// The generator's per-datagram work allocates nothing, so that what a run
// measures in allocations is the transport's.
func TestPerDatagramAllocs(t *testing.T) {
	r := &run{cfg: Config{Size: 100}, flows: nopFlows{}, tunnels: make([]tunnelState, 1), start: time.Now(), to: time.Hour}
	buf := make([]byte, 100)
	h := header{tag: 1}
	require.Zero(t, testing.AllocsPerRun(1000, func() { r.send(0, &h, buf, r.now()) }))

	shard := &histShard{h: newLatencyHist()}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		got, ok := parseHeader(buf)
		if ok {
			shard.record(r.now() - got.sent)
		}
	}))
}
