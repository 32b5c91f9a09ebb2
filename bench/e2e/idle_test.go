package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/bench/e2e"
	"github.com/masqroute/masqroute/engine/client"
)

var (
	idleTunnels     = flag.Int("idle.tunnels", 2000, "BenchmarkIdleTunnels: idle tunnels to open")
	idleConns       = flag.Int("idle.conns", 10, "BenchmarkIdleTunnels: connections the tunnels are spread over")
	idleSettle      = flag.Duration("idle.settle", time.Second, "BenchmarkIdleTunnels: how long the tunnels stay idle before the proxy's memory is read")
	idlePin         = flag.Bool("idle.pin", true, "BenchmarkIdleTunnels: pin the proxy process to one CPU at GOMAXPROCS 1, as BenchmarkE2E does")
	idleHeapProfile = flag.String("idle.heapprofile", "", "BenchmarkIdleTunnels: `dir`ectory for heap profiles of the proxy process (before, after: diff them with go tool pprof -diff_base) and its goroutines; the child then samples every allocation (GODEBUG=memprofilerate=1), which itself costs memory: read the memory metrics from a run without it")
)

// idleGoroutineMark is the tunnel count at which BenchmarkIdleTunnels also
// reports the proxy's goroutines (goroutines-at-1000).
const idleGoroutineMark = 1000

// BenchmarkIdleTunnels measures what an idle CONNECT-UDP tunnel costs the
// proxy: memory and goroutines. For each proxy (masqroute, the stock quic-go
// baseline) it starts a fresh proxy process (as BenchmarkE2E does), runs a
// GC there (debug.FreeOSMemory) and reads its RSS (VmRSS) and runtime; then
// it opens -idle.tunnels tunnels over -idle.conns connections to the UDP
// echo target, each sending one datagram and getting its echo (so that its
// socket, its reader and its state are all set up), leaves them idle for
// -idle.settle, runs a GC in the proxy again and reads the same. (Each
// reading runs two GCs, so that sync.Pool victim caches are empty.) The
// proxy process is pinned to one CPU at GOMAXPROCS 1 as in BenchmarkE2E
// (-idle.pin=false: unpinned). Metrics:
//
//	rss-kB/tunnel         (RSS after − RSS before) / tunnels, kB (1000 bytes)
//	heap-kB/tunnel        the same for the Go heap and goroutine stacks
//	                      (runtime HeapInuse + StackInuse)
//	goroutines/tunnel     (goroutines after − before) / tunnels
//	goroutines            the proxy's goroutines with every tunnel open
//	goroutines-at-1000    the same once 1000 tunnels were open (at ≥ 1000)
//	rss-MB                the proxy's RSS with every tunnel open, MiB
//
// The connections and the data path's fixed goroutines (started with the
// first connection) are part of "after": over 2000 tunnels and 10
// connections they weigh little, and that is the cost a new user sees.
// Every run is a fresh process whatever b.N is: use -benchtime 1x.
//
//	go test -run '^$' -bench IdleTunnels -benchtime 1x -count 3 ./bench/e2e/
//	go test -run '^$' -bench 'IdleTunnels/impl=masqroute' -benchtime 1x ./bench/e2e/ -idle.heapprofile /tmp/idle
//	go tool pprof -sample_index=inuse_space -diff_base /tmp/idle/masqroute-before.pprof -top /tmp/idle/masqroute-after.pprof
//
// Under -short: 50 tunnels over 2 connections.
func BenchmarkIdleTunnels(b *testing.B) {
	tunnels, conns, settle := *idleTunnels, *idleConns, *idleSettle
	if testing.Short() {
		tunnels, conns, settle = 50, 2, 100*time.Millisecond
	}
	cpu := -1
	if *idlePin {
		if cpus, err := e2e.AllowedCPUs(); err == nil && len(cpus) >= 2 {
			cpu = cpus[1]
		}
	}
	results := make(map[*testing.B]idleResult)
	for _, impl := range []e2e.Impl{e2e.Masqroute, e2e.Baseline} {
		b.Run(fmt.Sprintf("impl=%s/tunnels=%d", impl, tunnels), func(b *testing.B) {
			r, ok := results[b] // the testing package may call us twice per repetition
			if !ok {
				r = measureIdle(b, impl, tunnels, conns, settle, cpu)
				results[b] = r
			}
			r.report(b)
		})
	}
}

// idleResult is one proxy's state before and after the tunnels opened.
type idleResult struct {
	tunnels        int
	rss            [2]uint64
	rt             [2]e2e.RuntimeStats
	goroutinesAt1k int // -1: fewer tunnels than idleGoroutineMark
	openTime       time.Duration
	pinned         int
}

func (r idleResult) report(b *testing.B) {
	n := float64(r.tunnels)
	b.ReportMetric(0, "ns/op") // one fixed run, not per-op work
	b.ReportMetric((float64(r.rss[1])-float64(r.rss[0]))/1000/n, "rss-kB/tunnel")
	heap := func(s e2e.RuntimeStats) float64 { return float64(s.HeapInuse + s.StackInuse) }
	b.ReportMetric((heap(r.rt[1])-heap(r.rt[0]))/1000/n, "heap-kB/tunnel")
	b.ReportMetric(float64(r.rt[1].Goroutines-r.rt[0].Goroutines)/n, "goroutines/tunnel")
	b.ReportMetric(float64(r.rt[1].Goroutines), "goroutines")
	if r.goroutinesAt1k >= 0 {
		b.ReportMetric(float64(r.goroutinesAt1k), "goroutines-at-1000")
	}
	b.ReportMetric(float64(r.rss[1])/(1<<20), "rss-MB")
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.Logf("%d tunnels: RSS %.1f → %.1f MiB, heap in use %.1f → %.1f MiB (live objects %.1f → %.1f), stacks %.1f → %.1f MiB, goroutines %d → %d (at %d tunnels: %d), opened in %v, proxy pinned to CPU %d",
		r.tunnels, mib(r.rss[0]), mib(r.rss[1]),
		mib(r.rt[0].HeapInuse), mib(r.rt[1].HeapInuse), mib(r.rt[0].HeapAlloc), mib(r.rt[1].HeapAlloc),
		mib(r.rt[0].StackInuse), mib(r.rt[1].StackInuse),
		r.rt[0].Goroutines, r.rt[1].Goroutines, idleGoroutineMark, r.goroutinesAt1k,
		r.openTime.Round(time.Millisecond), r.pinned)
}

func measureIdle(b *testing.B, impl e2e.Impl, tunnels, conns int, settle time.Duration, cpu int) idleResult {
	// Bounded whatever happens to the proxy.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pcfg := e2e.ProcessConfig{CPU: cpu}
	profDir := *idleHeapProfile
	if profDir != "" {
		require.NoError(b, os.MkdirAll(profDir, 0o755))
		pcfg.Env = append(pcfg.Env, "GODEBUG=memprofilerate=1")
	}
	env, err := e2e.StartProcess(impl, pcfg)
	require.NoError(b, err)
	defer func() { require.NoError(b, env.Close()) }()
	p := env.Process
	r := idleResult{tunnels: tunnels, goroutinesAt1k: -1, pinned: p.Pinned}

	snap := func(i int, name string) {
		// Twice: what sync.Pools held before the first GC survives it in
		// their victim caches and is freed by the second.
		_, err := p.GC(ctx)
		require.NoError(b, err)
		st, err := p.GC(ctx)
		require.NoError(b, err)
		ps, err := p.ProcStats()
		require.NoError(b, err)
		r.rt[i], r.rss[i] = st, ps.RSS
		if profDir != "" {
			var buf bytes.Buffer
			require.NoError(b, p.WriteProfile(ctx, "heap", 0, true, &buf))
			require.NoError(b, os.WriteFile(filepath.Join(profDir, fmt.Sprintf("%s-%s.pprof", impl, name)), buf.Bytes(), 0o644))
			buf.Reset()
			require.NoError(b, p.WriteProfile(ctx, "goroutine", 1, false, &buf))
			require.NoError(b, os.WriteFile(filepath.Join(profDir, fmt.Sprintf("%s-%s-goroutines.txt", impl, name)), buf.Bytes(), 0o644))
		}
	}
	snap(0, "before")

	start := time.Now()
	it, err := openIdleTunnels(ctx, p, env.Target, tunnels, conns, func(open int) {
		if open == idleGoroutineMark {
			st, err := p.Runtime(ctx)
			require.NoError(b, err)
			r.goroutinesAt1k = st.Goroutines
		}
	})
	require.NoError(b, err)
	defer func() { require.NoError(b, it.Close()) }()
	r.openTime = time.Since(start)
	if tunnels == idleGoroutineMark && r.goroutinesAt1k < 0 {
		st, err := p.Runtime(ctx)
		require.NoError(b, err)
		r.goroutinesAt1k = st.Goroutines
	}

	t := time.NewTimer(settle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	require.NoError(b, ctx.Err())
	snap(1, "after")
	return r
}

// idleSet is a set of open idle tunnels and their connections.
type idleSet struct {
	conns   []*client.Conn
	tunnels []*client.UDPConn
}

func (s *idleSet) Close() error {
	var errs []error
	for _, u := range s.tunnels {
		if u != nil {
			errs = append(errs, u.Close())
		}
	}
	for _, c := range s.conns {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Bounds of one tunnel's setup: its echo must come back within
// idleEchoWait, at most idleEchoTries sends.
const (
	idleEchoWait   = time.Second
	idleEchoTries  = 3
	idleParallel   = 64 // tunnel setups at once
	idleBatchRound = 250
)

// openIdleTunnels opens tunnels tunnels through p to target over conns
// connections (tunnel i on connection i mod conns) and sends one datagram
// on each, waiting for its echo. It opens them in rounds of idleBatchRound
// (idleParallel at once) and calls progress with the count open after each
// round.
func openIdleTunnels(ctx context.Context, p *e2e.Process, target string, tunnels, conns int, progress func(open int)) (_ *idleSet, err error) {
	cfg := &client.Config{TLSConfig: p.TLS.Clone(), QUICConfig: e2e.QUICConfig(), Logger: slog.New(slog.DiscardHandler)}
	s := &idleSet{conns: make([]*client.Conn, conns), tunnels: make([]*client.UDPConn, tunnels)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for i := range s.conns {
		if s.conns[i], err = client.Dial(ctx, p.Addr, cfg); err != nil {
			return nil, err
		}
	}
	payload := make([]byte, 1200)
	for lo := 0; lo < tunnels; lo += idleBatchRound {
		hi := min(lo+idleBatchRound, tunnels)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			sem  = make(chan struct{}, idleParallel)
		)
		for i := lo; i < hi; i++ {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				u, err := s.conns[i%conns].DialUDP(ctx, target)
				if err == nil {
					s.tunnels[i] = u
					err = echoOnce(u, payload)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("tunnel %d: %w", i, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(hi)
		}
	}
	return s, nil
}

// echoOnce sends payload on u and waits for the echo, resending up to
// idleEchoTries times.
func echoOnce(u *client.UDPConn, payload []byte) error {
	buf := make([]byte, 2048)
	for range idleEchoTries {
		if _, err := u.Write(payload); err != nil {
			return err
		}
		if err := u.SetReadDeadline(time.Now().Add(idleEchoWait)); err != nil {
			return err
		}
		n, err := u.Read(buf)
		if err == nil && n == len(payload) {
			return u.SetReadDeadline(time.Time{})
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return fmt.Errorf("no echo after %d tries", idleEchoTries)
}
