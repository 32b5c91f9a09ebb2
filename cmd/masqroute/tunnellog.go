package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/masqroute/masqroute/engine/proxy"
)

// tunnelLog writes one INFO line per tunnel that ends and per refused
// request (component=tunnel), through a token bucket: at most rate lines a
// second, in bursts of up to rate. Lines over the limit are dropped and
// counted; the next line that gets through carries the count in
// "suppressed", so a flood of refusals costs a few lines, not the disk.
type tunnelLog struct {
	log  *slog.Logger
	rate float64 // lines per second; 0: no lines at all
	now  func() time.Time

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64
}

func newTunnelLog(base *slog.Logger, rate float64) *tunnelLog {
	return &tunnelLog{log: base.With("component", "tunnel"), rate: rate, now: time.Now, tokens: rate}
}

// allow takes a token if there is one; it returns whether the line may go
// and how many were suppressed before it (reset when it may).
func (l *tunnelLog) allow() (bool, uint64) {
	if l.rate <= 0 {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// ended logs a tunnel that ended: proxy.Hooks.TunnelEnded.
func (l *tunnelLog) ended(ti proxy.TunnelInfo) {
	ok, suppressed := l.allow()
	if !ok {
		return
	}
	attrs := []any{"kind", ti.Kind, "target", ti.Target, "client", ti.Client, "stream", ti.Stream,
		"duration", ti.Duration.Round(time.Millisecond).String(),
		"datagrams_to_target", ti.ToTarget, "bytes_to_target", ti.ToTargetBytes,
		"datagrams_to_client", ti.ToClient, "bytes_to_client", ti.ToClientBytes,
		"dropped", ti.Dropped, "reason", ti.CloseReason}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.log.Info("tunnel ended", attrs...)
}

// refused logs a refused request: proxy.Hooks.Refused.
func (l *tunnelLog) refused(r proxy.Refusal) {
	ok, suppressed := l.allow()
	if !ok {
		return
	}
	attrs := []any{"status", r.Status, "reason", r.Reason, "details", r.Details, "kind", r.Kind, "client", r.Client}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.log.Info("tunnel refused", attrs...)
}
