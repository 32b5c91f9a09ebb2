package loadgen

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultSize        = 1200
	DefaultDuration    = 10 * time.Second
	DefaultDrain       = 500 * time.Millisecond
	DefaultLossTimeout = 250 * time.Millisecond
	// AutoWindowTotal is what Window 0 aims at in a closed loop: about
	// this many datagrams in flight over all tunnels, at least 1 and at
	// most MaxAutoWindow per tunnel.
	AutoWindowTotal = 256
	MaxAutoWindow   = 64
)

// Config describes one run.
type Config struct {
	// Transport opens the tunnels. Required.
	Transport Transport
	// Target is the echo target ("host:port") the tunnels reach. A
	// transport without a target (raw QUIC echo) ignores it.
	Target string
	// Tunnels is how many tunnels carry load. Default 1.
	Tunnels int
	// Conns is how many connections the tunnels are spread over (tunnel
	// i on connection i mod Conns). Default 1; at most Tunnels.
	Conns int
	// Size is each datagram's payload in bytes, header included. Default
	// DefaultSize; at least HeaderLen.
	Size int
	// Rate is the offered load in datagrams per second over all tunnels
	// (open loop: sent on schedule whatever comes back). 0 runs a closed
	// loop at maximum: each tunnel keeps Window datagrams in flight.
	Rate float64
	// Window is each tunnel's datagrams in flight in a closed loop. 0
	// chooses AutoWindowTotal/Tunnels, between 1 and MaxAutoWindow.
	Window int
	// Warmup is sent before the measured interval and not counted.
	Warmup time.Duration
	// Duration is the measured interval. Default DefaultDuration.
	Duration time.Duration
	// Drain is how long Run waits after the last send for replies still
	// in flight. Default DefaultDrain.
	Drain time.Duration
	// LossTimeout: in a closed loop, a tunnel with a full window that
	// heard nothing back for this long counts what is in flight as lost
	// and sends a new window. Default DefaultLossTimeout.
	//
	// It is fixed, not a retransmission timeout estimated from the round
	// trips as TCP's: with a thousand tunnels overloading a machine, an
	// estimated one (RFC 6298, even at a 10 ms floor) fires on late
	// replies and refills windows early, which overloads the queues that
	// drop further and measures that overload rather than the proxy.
	LossTimeout time.Duration
	// Probes read counters along the path (proxy, echo target) at the
	// start of the measured interval and after the drain.
	Probes []Probe
	// Progress, if set, is called about once a second from a goroutine
	// of Run's, and not after Run returns.
	Progress func(Progress)
}

// Progress is a live view of a run.
type Progress struct {
	Phase    string        // "warmup", "measure" or "drain"
	Elapsed  time.Duration // since the start of the phase "measure" (negative in warmup)
	Duration time.Duration // the measured interval's planned length
	Drain    time.Duration // the drain's planned length
	// Sent and Received count what the result will: datagrams sent in
	// the measured interval and their replies read so far (0 in warm-up).
	Sent     uint64
	Received uint64
	// SentRate and RecvRate are over the last report's interval, in
	// datagrams per second, warm-up included.
	SentRate, RecvRate float64
}

func (c Config) withDefaults() Config {
	if c.Tunnels <= 0 {
		c.Tunnels = 1
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	c.Conns = min(c.Conns, c.Tunnels)
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Window <= 0 {
		c.Window = AutoWindow(c.Tunnels)
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Drain <= 0 {
		c.Drain = DefaultDrain
	}
	if c.LossTimeout <= 0 {
		c.LossTimeout = DefaultLossTimeout
	}
	return c
}

// AutoWindow is the per-tunnel window Window 0 chooses for a closed loop of
// this many tunnels.
func AutoWindow(tunnels int) int {
	return max(1, min(MaxAutoWindow, (AutoWindowTotal+tunnels-1)/max(tunnels, 1)))
}

func (c Config) validate() error {
	switch {
	case c.Transport == nil:
		return errors.New("loadgen: no transport")
	case c.Size < HeaderLen:
		return fmt.Errorf("loadgen: size %d is below the %d-byte header", c.Size, HeaderLen)
	case c.Size > 65507:
		return fmt.Errorf("loadgen: size %d is above the UDP maximum", c.Size)
	case c.Rate < 0:
		return errors.New("loadgen: negative rate")
	case c.Warmup < 0:
		return errors.New("loadgen: negative warmup")
	case c.Tunnels > 1<<20:
		return errors.New("loadgen: too many tunnels")
	}
	return nil
}

// Mode is "open" for a run at a fixed offered rate, "closed" otherwise.
func (c Config) Mode() string {
	if c.Rate > 0 {
		return "open"
	}
	return "closed"
}
