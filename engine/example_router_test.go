package engine_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/masqroute/masqroute/engine"
)

type printer struct{ wg *sync.WaitGroup }

func (p printer) HandleDatagrams(batch [][]byte) {
	for _, d := range batch {
		fmt.Printf("got %q\n", d)
		p.wg.Done()
	}
}
func (p printer) Close(reason error) { fmt.Println("closed:", reason) }

// A Router on its own: a session kind, a session, datagrams routed to it by
// stream ID, and the counters.
func ExampleNewRouter() {
	var wg sync.WaitGroup
	kinds := engine.NewRegistry()
	kinds.Register(engine.ProtocolConnectUDP, engine.KindFunc(
		func(context.Context, *engine.Session, engine.Args) (engine.Handler, error) {
			return printer{&wg}, nil
		}))
	r := engine.NewRouter(engine.Options{MaxTunnels: 10, Kinds: kinds})

	if _, err := r.StartSession(context.Background(), 4, engine.Args{}); err != nil {
		fmt.Println(err)
	}
	wg.Add(2)
	r.Dispatch(4, []byte("\x00hello"))
	r.Dispatch(4, []byte("\x00world"))
	r.Dispatch(8, []byte("\x00nobody")) // no session on stream 8
	wg.Wait()

	st := r.Stats()
	fmt.Println("delivered", st.Delivered, "dropped (unknown stream)", st.DroppedUnknown)
	r.Close()
	// Output:
	// got "\x00hello"
	// got "\x00world"
	// delivered 2 dropped (unknown stream) 1
	// closed: masqroute: router closed
}
