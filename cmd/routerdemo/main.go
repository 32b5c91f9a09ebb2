// Command routerdemo routes a stream of datagrams through one engine.Router
// and prints what happened: sessions starting (one of them slowly), datagrams
// held for the pending one, drops for an unknown stream, and the router's
// counters at the end.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqroute/masqroute/engine"
)

// counter is a Handler that counts what it receives.
type counter struct {
	name string
	n    atomic.Uint64
}

func (c *counter) HandleDatagrams(b [][]byte) { c.n.Add(uint64(len(b))) }
func (c *counter) Close(reason error) {
	fmt.Printf("  %-8s closed after %d datagrams (%v)\n", c.name, c.n.Load(), reason)
}

func main() {
	handlers := map[uint64]*counter{}
	var mu sync.Mutex
	kinds := engine.NewRegistry()
	kinds.Register(engine.ProtocolConnectUDP, engine.KindFunc(
		func(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
			if d, ok := args.Value.(time.Duration); ok {
				select { // a slow init: the router keeps routing meanwhile
				case <-time.After(d):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			c := &counter{name: fmt.Sprintf("stream %d", s.StreamID())}
			mu.Lock()
			handlers[s.StreamID()] = c
			mu.Unlock()
			return c, nil
		}))
	r := engine.NewRouter(engine.Options{
		MaxTunnels: 3,
		Kinds:      kinds,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})

	ctx := context.Background()
	fmt.Println("starting sessions on streams 0 and 4; stream 8 has a 200 ms init")
	for _, id := range []uint64{0, 4} {
		if _, err := r.StartSession(ctx, id, engine.Args{}); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
	}
	slowDone := make(chan error, 1)
	go func() {
		_, err := r.StartSession(ctx, 8, engine.Args{Value: 200 * time.Millisecond})
		slowDone <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if _, err := r.StartSession(ctx, 12, engine.Args{}); err != nil {
		fmt.Println("stream 12 refused while 3 tunnels exist:", err)
	}

	fmt.Println("two dispatchers send 100000 datagrams each over streams 0, 4, 8 and unknown 16")
	var wg sync.WaitGroup
	begin := time.Now()
	for d := range 2 {
		wg.Go(func() {
			payload := make([]byte, 1200)
			ids := []uint64{0, 4, 8, 16}
			for i := range 100000 {
				r.Dispatch(ids[(i+d)%len(ids)], payload)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if err := <-slowDone; err != nil {
		fmt.Println("slow start:", err)
	}
	time.Sleep(50 * time.Millisecond) // let the session goroutines drain

	st := r.Stats()
	fmt.Printf("dispatched %d datagrams in %v (%.0f ns each across 2 dispatchers)\n",
		st.Dispatched, elapsed.Round(time.Microsecond), float64(elapsed.Nanoseconds())/float64(st.Dispatched)*2)
	fmt.Printf("  delivered %d, queued %d\n", st.Delivered, st.Queued)
	fmt.Printf("  dropped: unknown stream %d, pending overflow %d, ring full %d, closed %d\n",
		st.DroppedUnknown, st.DroppedPendingOverflow, st.DroppedRingFull, st.DroppedClosed)
	fmt.Printf("  sessions: active %d, started %d, rejected (limit) %d\n", st.Active, st.Started, st.RejectedLimit)
	fmt.Println("closing the router:")
	r.Close()
}
