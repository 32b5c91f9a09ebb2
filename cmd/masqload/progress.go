package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/masqroute/masqroute/bench/e2e/loadgen"
)

// progressLine is the live status line on a terminal, rewritten in place
// about once a second.
type progressLine struct {
	mu    sync.Mutex // serializes writes from the run's progress goroutine and clear
	w     io.Writer
	shown bool
}

func (p *progressLine) update(pr loadgen.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch pr.Phase {
	case "warmup":
		// Nothing is counted yet: rates only.
		fmt.Fprintf(p.w, "\r\x1b[K[warm-up %4.1fs left] sending %.0f/s, receiving %.0f/s (not counted)",
			(-pr.Elapsed).Round(100*time.Millisecond).Seconds(), pr.SentRate, pr.RecvRate)
	case "drain":
		fmt.Fprintf(p.w, "\r\x1b[K[drain   %4.1fs/%.1fs] sent %d, received %d so far: waiting for the last replies",
			(pr.Elapsed - pr.Duration).Seconds(), pr.Drain.Seconds(), pr.Sent, pr.Received)
	default:
		fmt.Fprintf(p.w, "\r\x1b[K[measure %5.1fs/%.0fs] sent %d (%.0f/s)  received %d (%.0f/s)",
			pr.Elapsed.Seconds(), pr.Duration.Seconds(), pr.Sent, pr.SentRate, pr.Received, pr.RecvRate)
	}
	p.shown = true
}

// clear erases the line, if one was shown. A nil p does nothing.
func (p *progressLine) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}
