package main

// The daemon's garbage collector settings: -gc-percent and -memory-limit.

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is -gc-percent's default. quic-go allocates per
// datagram (it copies every datagram it sends or receives), so the proxy's
// garbage grows with its traffic while its live heap (tunnels, rings,
// buffers) does not: fewer, larger collections cost less CPU and more
// memory. Measured (docs/benchmarks.md, "Garbage collector"; 100 tunnels,
// closed loop, proxy pinned to one core), GOGC 100 → 200 → 400 → 800:
// collections per run 35–47 → 13–21 → 7–10 → 2–3, the collector's share of
// the proxy's CPU 4–6 % → 2–3 % → 1–2 % → 0 %, RSS 30 → 37 → 49 → 77 MiB;
// CPU per round trip moved by less than the machine's noise. 200 takes
// most of the saving for +20 % RSS; 400 buys one more percent for +60 %,
// and since the heap goal is live heap × (1 + GOGC/100), that price grows
// with every open tunnel.
const defaultGCPercent = 200

// defaultMemoryLimit is -memory-limit's default: none. A limit must fit the
// host (a container's memory less headroom); one below the live heap makes
// the collector run back to back. Where memory is known, give it, and a
// higher -gc-percent under it is safe.
const defaultMemoryLimit = noMemoryLimit

// noMemoryLimit is what the runtime takes for "no limit".
const noMemoryLimit = math.MaxInt64

// gcConfig is what the two flags ask for. A flag not given on the command
// line whose environment variable (GOGC, GOMEMLIMIT) is set leaves the
// runtime as the variable set it: set* is false then.
type gcConfig struct {
	percent    int   // -1: off
	memLimit   int64 // bytes; noMemoryLimit: none
	setPercent bool
	setLimit   bool
}

// gcFlags registers -gc-percent and -memory-limit on fs.
func (g *gcConfig) flags(fs *flag.FlagSet) {
	g.percent, g.memLimit = defaultGCPercent, defaultMemoryLimit
	fs.IntVar(&g.percent, "gc-percent", defaultGCPercent,
		"garbage collection target `percent`age (as GOGC; -1: off, best with -memory-limit); default chosen by\n"+
			"measurement (docs/benchmarks.md); without this flag a GOGC variable in the environment wins")
	fs.Var((*byteSize)(&g.memLimit), "memory-limit",
		"soft memory `limit` of the process (as GOMEMLIMIT: 512MiB, 1GiB, 1073741824, off); the collector works\n"+
			"harder as the heap nears it; without this flag a GOMEMLIMIT variable in the environment wins")
}

// resolve decides, after parsing, which settings the daemon applies.
func (g *gcConfig) resolve(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	g.setPercent = given["gc-percent"] || os.Getenv("GOGC") == ""
	g.setLimit = given["memory-limit"] || os.Getenv("GOMEMLIMIT") == ""
	if g.percent < -1 {
		return errors.New("-gc-percent must be -1 (off) or more")
	}
	if g.percent == -1 && g.setPercent && g.memLimit == noMemoryLimit {
		return errors.New("-gc-percent -1 turns the collector off: give -memory-limit too, or the heap grows without bound")
	}
	return nil
}

// apply sets the runtime's collector as g says and returns what restores
// the previous settings (the daemon runs in tests' processes too).
func (g *gcConfig) apply() (restore func()) {
	oldPercent, oldLimit := -2, int64(-1)
	if g.setPercent {
		oldPercent = debug.SetGCPercent(g.percent)
	}
	if g.setLimit {
		oldLimit = debug.SetMemoryLimit(g.memLimit)
	}
	return func() {
		if oldPercent != -2 {
			debug.SetGCPercent(oldPercent)
		}
		if oldLimit >= 0 {
			debug.SetMemoryLimit(oldLimit)
		}
	}
}

// logValues are the settings in force, for the "started" log line.
func (g *gcConfig) logValues() (percent, limit string) {
	percent, limit = "GOGC="+os.Getenv("GOGC"), "GOMEMLIMIT="+os.Getenv("GOMEMLIMIT")
	if g.setPercent {
		percent = strconv.Itoa(g.percent)
	}
	if g.setLimit {
		limit = byteSize(g.memLimit).String()
	}
	return percent, limit
}

// byteSize is a flag.Value for a byte count written as GOMEMLIMIT is: a
// non-negative integer with an optional unit B, KiB, MiB, GiB or TiB, or
// "off" for no limit.
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

func (b *byteSize) Set(s string) error {
	if s == "off" {
		*b = noMemoryLimit
		return nil
	}
	num, shift := s, uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || num == "" || n > math.MaxInt64>>shift {
		return fmt.Errorf("%q is not a size: a whole number of B, KiB, MiB, GiB or TiB (512MiB, 1GiB), or off", s)
	}
	*b = byteSize(n << shift)
	return nil
}

func (b byteSize) String() string {
	if b == noMemoryLimit {
		return "off"
	}
	for _, u := range byteUnits {
		if unit := int64(1) << u.shift; b != 0 && int64(b)%unit == 0 {
			return strconv.FormatInt(int64(b)/unit, 10) + u.suffix
		}
	}
	return "0B"
}
