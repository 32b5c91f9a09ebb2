package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// stopGrace bounds how long Run waits for a sender after telling it to stop.
const stopGrace = 2 * time.Second

// run is the state of one Run. Its stages and their goroutines:
//
//	routineClosed  one per tunnel (closed loop): sends while fewer than
//	               Window are in flight, parks until a reply or LossTimeout
//	routinePace    one per connection (open loop): sends its share of Rate
//	               on schedule, round robin over its tunnels
//	routineRead    one per Flows reader: counts replies, records round trips
//	               and wakes a parked closed-loop sender
//	routineProgress one if Config.Progress is set
//
// Senders stop at the end of the measured interval; readers stop when the
// flows are closed after the drain.
type run struct {
	cfg   Config
	flows Flows
	tag   uint32
	start time.Time
	// from and to bound the measured interval, as offsets from start: a
	// datagram is counted when its send time lies in [from, to).
	from, to time.Duration

	stopping atomic.Bool   // senders stop sending
	stop     chan struct{} // closed with stopping set, for senders that wait
	closing  atomic.Bool   // readers stop counting: the drain is over

	tunnels []tunnelState
	rtt     []histShard // round trips of measured replies, by reader
	lag     []*histShard
	stray   atomic.Uint64 // replies not from this run, or unparsable
	timeout atomic.Uint64 // closed loop: windows written off as lost
	sendErr atomic.Uint64
}

// tunnelState is one tunnel's counters. Sender and reader fields sit on
// their own cache lines: they are written by different goroutines.
type tunnelState struct {
	sent    atomic.Uint64 // datagrams sent (any time)
	sentWin atomic.Uint64 // ... in the measured interval
	_       [48]byte

	recv    atomic.Uint64 // replies read (any time)
	recvWin atomic.Uint64 // ... sent in the measured interval
	// parked is set by a closed-loop sender about to wait for a reply; a
	// reader that clears it sends a token on wake.
	parked atomic.Bool
	wake   chan struct{}
	_      [32]byte
}

// Run drives cfg's load and returns what it measured. It returns early,
// with what was measured so far, when ctx ends during the measured interval;
// an error if ctx ends before it.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	flows, err := cfg.Transport.Open(ctx, cfg.Target, cfg.Tunnels, cfg.Conns)
	if err != nil {
		return Result{}, err
	}
	r := &run{
		cfg:     cfg,
		flows:   flows,
		tag:     rand.Uint32(),
		from:    cfg.Warmup,
		to:      cfg.Warmup + cfg.Duration,
		tunnels: make([]tunnelState, cfg.Tunnels),
		stop:    make(chan struct{}),
	}
	for i := range r.tunnels {
		r.tunnels[i].wake = make(chan struct{}, 1)
	}
	return r.run(ctx)
}

func (r *run) now() time.Duration { return time.Since(r.start) }

func (r *run) run(ctx context.Context) (Result, error) {
	readers := r.flows.Readers()
	r.rtt = make([]histShard, min(len(readers), 4*runtime.GOMAXPROCS(0)))
	for i := range r.rtt {
		r.rtt[i].h = newLatencyHist()
	}
	r.start = time.Now()

	var readWG sync.WaitGroup
	for i, rd := range readers {
		readWG.Go(func() { r.routineRead(&r.rtt[i%len(r.rtt)], rd) })
	}
	closeFlows := sync.OnceFunc(func() {
		r.closing.Store(true)
		r.flows.Close()
		readWG.Wait()
	})
	defer closeFlows()

	var sendWG sync.WaitGroup
	if r.cfg.Rate > 0 {
		for c := range r.cfg.Conns {
			lag := &histShard{h: newLatencyHist()}
			r.lag = append(r.lag, lag)
			sendWG.Go(func() { r.routinePace(c, lag) })
		}
	} else {
		for i := range r.tunnels {
			sendWG.Go(func() { r.routineClosed(i) })
		}
	}
	sendersDone := make(chan struct{})
	go func() {
		sendWG.Wait()
		close(sendersDone)
	}()
	// stopSenders tells the senders to stop and waits for them; a sender
	// stuck in Send for stopGrace is released by closing the flows.
	stopSenders := sync.OnceFunc(func() {
		r.stopping.Store(true)
		close(r.stop)
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-sendersDone:
		case <-t.C:
			closeFlows()
			<-sendersDone
		}
	})
	defer stopSenders()

	progressDone := make(chan struct{})
	var progWG sync.WaitGroup
	if r.cfg.Progress != nil {
		progWG.Go(func() { r.routineProgress(progressDone) })
	}
	stopProgress := sync.OnceFunc(func() {
		close(progressDone)
		progWG.Wait()
	})
	defer stopProgress()

	// Warm-up; then the counters at the start of the measured interval.
	if !r.sleepUntil(ctx, r.from) {
		return Result{}, fmt.Errorf("loadgen: stopped during warm-up: %w", context.Cause(ctx))
	}
	before, err := r.readProbes(ctx)
	if err != nil {
		return Result{}, err
	}
	// The measured interval. Cancelled early, it ends where it was cut.
	end := r.to
	if !r.sleepUntil(ctx, r.to) {
		end = min(r.now(), r.to)
	} else if r.cfg.Rate > 0 {
		// Pacers stop by themselves once they have sent everything due
		// before the end; give one that is behind the drain's length
		// to catch up.
		t := time.NewTimer(r.cfg.Drain)
		select {
		case <-sendersDone:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	stopSenders()
	// The drain, unless ctx is done already.
	r.sleepUntil(ctx, r.now()+r.cfg.Drain)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	after, err := r.readProbes(pctx)
	closeFlows()
	stopProgress()
	if err != nil {
		return Result{}, err
	}
	return r.result(end-r.from, delta(before, after)), nil
}

// sleepUntil waits until offset at from the start; false if ctx ended first.
func (r *run) sleepUntil(ctx context.Context, at time.Duration) bool {
	d := at - r.now()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readProbes reads the generator's own counters and every probe's.
func (r *run) readProbes(ctx context.Context) (Counters, error) {
	sent, recv := r.totals()
	c := Counters{Hops: []Hop{
		{Stage: StageSent, Name: "generator: sent", Count: sent},
		{Stage: StageReceived, Name: "generator: received", Count: recv},
	}}
	probes := r.cfg.Probes
	if p := r.flows.Probe(); p != nil {
		probes = append([]Probe{p}, probes...)
	}
	for _, p := range probes {
		pc, err := p.Read(ctx)
		if err != nil {
			return Counters{}, fmt.Errorf("loadgen: probe: %w", err)
		}
		c.merge(pc)
	}
	return c, nil
}

// totals sums every tunnel's datagrams sent and replies read.
func (r *run) totals() (sent, recv uint64) {
	for i := range r.tunnels {
		sent += r.tunnels[i].sent.Load()
		recv += r.tunnels[i].recv.Load()
	}
	return sent, recv
}

// windowTotals sums every tunnel's datagrams sent in the measured interval
// and the replies read to them.
func (r *run) windowTotals() (sent, recv uint64) {
	for i := range r.tunnels {
		sent += r.tunnels[i].sentWin.Load()
		recv += r.tunnels[i].recvWin.Load()
	}
	return sent, recv
}

// routineProgress reports progress about once a second until done closes.
func (r *run) routineProgress(done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent, lastRecv uint64
	last := r.now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		now := r.now()
		sent, recv := r.totals()
		secs := (now - last).Seconds()
		winSent, winRecv := r.windowTotals()
		p := Progress{
			Phase:    "measure",
			Elapsed:  now - r.from,
			Duration: r.cfg.Duration,
			Drain:    r.cfg.Drain,
			Sent:     winSent,
			Received: winRecv,
			SentRate: float64(sent-lastSent) / secs,
			RecvRate: float64(recv-lastRecv) / secs,
		}
		switch {
		case now < r.from:
			p.Phase = "warmup"
		case now >= r.to:
			p.Phase = "drain"
		}
		r.cfg.Progress(p)
		lastSent, lastRecv, last = sent, recv, now
	}
}
