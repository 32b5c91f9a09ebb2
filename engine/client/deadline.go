package client

import (
	"sync"
	"time"
)

// deadlines is a read deadline as a channel that is closed when it passes.
type deadlines struct {
	mu    sync.Mutex // guards the fields below
	ch    chan struct{}
	timer *time.Timer
}

func (d *deadlines) init() { d.ch = make(chan struct{}) }

// set arms the deadline at t; the zero time clears it.
func (d *deadlines) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.ch: // passed before: start over with an open channel
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.ch == ch { // not replaced by a later set
			close(ch)
		}
	})
}

// wait returns the channel a reader selects on.
func (d *deadlines) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
