package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// A Stage is a point on the datagram path, in path order. Hop counts at
// consecutive stages show where datagrams went missing.
type Stage int

// The stages, in path order.
const (
	StageSent            Stage = iota // handed to the transport by the generator
	StageProxyIn                      // reached the proxy's datagram handling
	StageProxyRouted                  // handed to its tunnel by the proxy's router
	StageProxyToTarget                // written to the target's socket by the proxy
	StageTargetIn                     // received by the echo target
	StageTargetOut                    // echoed by the echo target
	StageProxyToClient                // sent back to the client by the proxy
	StageClientIn                     // reached the client's datagram handling
	StageClientDelivered              // handed to a tunnel reader
	StageReceived                     // read by the generator
)

var stageNames = [...]string{"sent", "proxy-in", "proxy-routed", "proxy-to-target", "target-in", "target-out",
	"proxy-to-client", "client-in", "client-delivered", "received"}

func (s Stage) String() string {
	if s >= 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage(?)"
}

// MarshalText writes the stage's name, for JSON.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a stage's name.
func (s *Stage) UnmarshalText(b []byte) error {
	for i, n := range stageNames {
		if n == string(b) {
			*s = Stage(i)
			return nil
		}
	}
	return fmt.Errorf("loadgen: unknown stage %q", b)
}

// A Hop is a cumulative count of datagrams that passed a point of the path.
type Hop struct {
	Stage Stage  `json:"stage"`
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// Counters are what a Probe reads: cumulative counts of datagrams at
// points of the path, and of datagrams dropped, by reason. Drop reasons are
// prefixed with where they happen ("proxy.ring_full").
type Counters struct {
	Hops  []Hop
	Drops map[string]uint64
	// DataPath are a masqroute proxy's data-path counters (wake-ups,
	// system calls, batches; see DataPath), by key.
	DataPath map[string]uint64
}

// A Probe reads counters along the path: a proxy's, an echo target's, the
// client's. Run reads every probe when the measured interval starts and
// again after the drain, and reports the differences.
type Probe interface {
	Read(ctx context.Context) (Counters, error)
}

// ProbeFunc adapts a function to a Probe.
type ProbeFunc func(ctx context.Context) (Counters, error)

// Read calls f.
func (f ProbeFunc) Read(ctx context.Context) (Counters, error) { return f(ctx) }

// merge appends o's hops and drops to c.
func (c *Counters) merge(o Counters) {
	c.Hops = append(c.Hops, o.Hops...)
	if len(o.Drops) > 0 && c.Drops == nil {
		c.Drops = make(map[string]uint64, len(o.Drops))
	}
	for k, v := range o.Drops {
		c.Drops[k] += v
	}
	if len(o.DataPath) > 0 && c.DataPath == nil {
		c.DataPath = make(map[string]uint64, len(o.DataPath))
	}
	for k, v := range o.DataPath {
		c.DataPath[k] += v
	}
}

// delta returns after − before, hops matched by name and sorted by stage;
// drop reasons that did not grow are left out (data-path counters are all
// kept: a 0 there is a result). A counter that went down
// (a gauge-like sum read while tunnels ended) counts as 0.
func delta(before, after Counters) Counters {
	prev := make(map[string]uint64, len(before.Hops))
	for _, h := range before.Hops {
		prev[h.Name] = h.Count
	}
	var d Counters
	for _, h := range after.Hops {
		h.Count = sub(h.Count, prev[h.Name])
		d.Hops = append(d.Hops, h)
	}
	slices.SortStableFunc(d.Hops, func(a, b Hop) int { return cmp.Compare(a.Stage, b.Stage) })
	for k, v := range after.Drops {
		if n := sub(v, before.Drops[k]); n > 0 {
			if d.Drops == nil {
				d.Drops = make(map[string]uint64)
			}
			d.Drops[k] = n
		}
	}
	for k, v := range after.DataPath {
		if d.DataPath == nil {
			d.DataPath = make(map[string]uint64, len(after.DataPath))
		}
		d.DataPath[k] = sub(v, before.DataPath[k])
	}
	return d
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
