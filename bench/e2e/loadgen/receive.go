package loadgen

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms hold nanoseconds from 1 µs to 60 s at 3 significant
// digits.
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(time.Minute)
	histDigits  = 3
)

func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// histShard is a histogram a few readers share. An HdrHistogram is not
// safe for concurrent use, and one per reader would cost ~100 KB each at a
// thousand tunnels.
type histShard struct {
	mu sync.Mutex // guards h
	h  *hdrhistogram.Histogram
	_  [40]byte
}

func (s *histShard) record(d time.Duration) {
	v := min(max(int64(d), histLowest), histHighest)
	s.mu.Lock()
	_ = s.h.RecordValue(v) // in range: cannot fail
	s.mu.Unlock()
}

// routineRead counts the replies one reader receives until it fails (the
// flows were closed): each is matched to its tunnel by its header; one sent
// in the measured interval adds its round trip to rtt. It wakes the
// tunnel's closed-loop sender if that is parked.
func (r *run) routineRead(rtt *histShard, read Reader) {
	buf := make([]byte, r.cfg.Size+64)
	for {
		n, err := read(buf)
		if err != nil {
			return
		}
		now := r.now()
		h, ok := parseHeader(buf[:n])
		if !ok || h.tag != r.tag || int(h.tunnel) >= len(r.tunnels) {
			r.stray.Add(1)
			continue
		}
		if r.closing.Load() {
			continue
		}
		ts := &r.tunnels[h.tunnel]
		ts.recv.Add(1)
		if h.sent >= r.from && h.sent < r.to {
			ts.recvWin.Add(1)
			rtt.record(now - h.sent)
		}
		if ts.parked.Load() && ts.parked.CompareAndSwap(true, false) {
			select {
			case ts.wake <- struct{}{}:
			default:
			}
		}
	}
}
