package baseline

import (
	"sync"
	"sync/atomic"
)

// chanSession is the session of singlerouter, syncmap and xsync: a buffered
// channel as the session's mailbox and a goroutine that drains it.
//
// Overflow policy: tryPush drops the newest datagram when the channel is
// full; the caller counts and releases it.
type chanSession struct {
	ch   chan []byte   // the mailbox, capacity Config.QueueCap
	done chan struct{} // closed once when the session is removed
}

func newChanSession(cfg Config) *chanSession {
	return &chanSession{ch: make(chan []byte, cfg.QueueCap), done: make(chan struct{})}
}

// tryPush sends d into the mailbox without blocking.
func (s *chanSession) tryPush(d []byte) bool {
	select {
	case s.ch <- d:
		return true
	default:
		return false
	}
}

// end tells the session goroutine to stop. Call it once.
func (s *chanSession) end() { close(s.done) }

// routineChanSession is the session goroutine: receive one datagram (parking
// while the mailbox is empty), take whatever else is there up to a batch
// without blocking, hand the batch to c, release it. When done is closed it
// discards what is left, counting each as a drop.
//
// A send on a channel whose receiver is parked hands the value straight to
// that receiver and readies it, so an idle session costs its dispatcher a
// goroutine wake-up per datagram; that is part of what this design costs.
func routineChanSession(s *chanSession, key uint64, c Consumer, cfg Config, dropped *atomic.Uint64, parks *parkCounter, wg *sync.WaitGroup) {
	defer wg.Done()
	batch := make([][]byte, 0, cfg.BatchSize)
	for {
		if len(s.ch) == 0 {
			parks.add(key) // about to park (a racy look, exact enough for a rate)
		}
		select {
		case d := <-s.ch:
			batch = append(batch, d)
		fill:
			for len(batch) < cap(batch) {
				select {
				case d := <-s.ch:
					batch = append(batch, d)
				default:
					break fill
				}
			}
			c.HandleDatagrams(batch)
			for i, d := range batch {
				cfg.Release(d)
				batch[i] = nil
			}
			batch = batch[:0]
		case <-s.done:
			for {
				select {
				case d := <-s.ch:
					dropped.Add(1)
					cfg.Release(d)
				default:
					return
				}
			}
		}
	}
}
