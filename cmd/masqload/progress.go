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
	when := fmt.Sprintf("%5.1fs/%.0fs", pr.Elapsed.Seconds(), pr.Duration.Seconds())
	if pr.Phase == "warmup" {
		when = fmt.Sprintf("%5.1fs", (-pr.Elapsed).Round(100*time.Millisecond).Seconds())
	}
	fmt.Fprintf(p.w, "\r\x1b[K[%-7s %s] sent %d (%.0f/s)  received %d (%.0f/s)",
		pr.Phase, when, pr.Sent, pr.SentRate, pr.Received, pr.RecvRate)
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
