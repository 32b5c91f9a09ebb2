package loadgen

import (
	"time"
)

// sendErrorBackoff is how long a sender waits after Flows.Send failed, so
// that a transport that has gone away does not make it spin.
const sendErrorBackoff = 10 * time.Millisecond

// send stamps buf's header with at and sends it on tunnel i. It reports
// whether the transport took it.
func (r *run) send(i int, h *header, buf []byte, at time.Duration) bool {
	h.sent = at
	h.put(buf)
	if err := r.flows.Send(i, buf); err != nil {
		r.sendErr.Add(1)
		return false
	}
	ts := &r.tunnels[i]
	ts.sent.Add(1)
	if at >= r.from && at < r.to {
		ts.sentWin.Add(1)
	}
	h.seq++
	return true
}

// routineClosed is tunnel i's closed-loop sender: it keeps Window datagrams
// in flight. A reply frees one place; a tunnel that heard nothing for
// LossTimeout counts everything in flight as lost and sends a new window.
func (r *run) routineClosed(i int) {
	ts := &r.tunnels[i]
	buf := make([]byte, r.cfg.Size)
	h := header{tag: r.tag, tunnel: uint32(i)}
	window := uint64(r.cfg.Window)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// sent counts accepted sends; written off are those given up as lost.
	var sent, writtenOff uint64
	for !r.stopping.Load() {
		recv := ts.recv.Load()
		if recv+writtenOff > sent {
			// Late replies of written-off datagrams: in flight is 0.
			writtenOff = sent - min(sent, recv)
		}
		if sent-recv-writtenOff < window {
			if r.send(i, &h, buf, r.now()) {
				sent++
			} else if !r.sleep(sendErrorBackoff) {
				return
			}
			continue
		}
		// The window is full: park until a reply or the loss timeout.
		// A reader that sees parked set clears it and sends a token;
		// re-checking recv after setting parked closes the race with a
		// reply that came in between.
		ts.parked.Store(true)
		if ts.recv.Load() != recv {
			ts.parked.Store(false)
			continue
		}
		timer.Reset(r.cfg.LossTimeout)
		select {
		case <-ts.wake:
			timer.Stop()
		case <-timer.C:
			ts.parked.Store(false)
			writtenOff = sent - min(sent, ts.recv.Load())
			r.timeout.Add(1)
		case <-r.stop:
			timer.Stop()
			return
		}
	}
}

// sleep waits d; false if the senders were told to stop meanwhile.
func (r *run) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stop:
		return false
	}
}

// routinePace is connection c's open-loop pacer: it sends Rate/Conns
// datagrams a second, round robin over the connection's tunnels, each
// stamped with the time it was due. Behind schedule it sends back to back
// until it has caught up; ahead of it, it sleeps. It stops at the end of
// the measured interval.
func (r *run) routinePace(c int, lag *histShard) {
	var mine []int
	for i := c; i < len(r.tunnels); i += r.cfg.Conns {
		mine = append(mine, i)
	}
	hdrs := make([]header, len(mine))
	for j, i := range mine {
		hdrs[j] = header{tag: r.tag, tunnel: uint32(i)}
	}
	buf := make([]byte, r.cfg.Size)
	interval := float64(time.Second) * float64(r.cfg.Conns) / r.cfg.Rate
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for k := 0; !r.stopping.Load(); {
		due := time.Duration(float64(k) * interval)
		if due >= r.to {
			return
		}
		now := r.now()
		if due > now {
			timer.Reset(due - now)
			select {
			case <-timer.C:
			case <-r.stop:
				return
			}
			continue
		}
		j := k % len(mine)
		if !r.send(mine[j], &hdrs[j], buf, due) && !r.sleep(sendErrorBackoff) {
			return
		}
		if due >= r.from {
			lag.record(now - due)
		}
		k++
	}
}
