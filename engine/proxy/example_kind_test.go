package proxy_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/proxy"
)

// greetKind is an embedder's own session kind: each datagram that comes in
// goes back with the greeting the request's URI named in front.
type greetKind struct{}

func (greetKind) Start(_ context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
	req := args.Value.(*proxy.Request)
	return &greeter{s: s, greeting: req.Vars["greeting"]}, nil
}

type greeter struct {
	s        *engine.Session
	greeting string
}

// HandleDatagrams answers each datagram (context ID 0, then the payload)
// with a datagram of its own. It runs on an executor worker and must not
// block; SendDatagram queues the datagram with QUIC.
func (g *greeter) HandleDatagrams(batch [][]byte) {
	for _, d := range batch {
		if len(d) == 0 || d[0] != 0 { // context ID 0 only
			continue
		}
		// Room in front for the datagram header SendDatagram writes.
		reply := fmt.Appendf(make([]byte, engine.MaxDatagramHeaderLen), "%s, %s", g.greeting, d[1:])
		g.s.SendDatagram(reply, engine.MaxDatagramHeaderLen, 0)
	}
}

func (g *greeter) Close(error) {}

// Register a session kind of your own for a :protocol of your own, with a
// URI template whose variables its handler reads, and pass datagrams
// through it.
func ExampleTemplateKind() {
	cert, pol, target := exampleSetup()
	defer target.Close()

	kind, err := proxy.TemplateKind("https://{authority}/greet/{greeting}/", greetKind{})
	if err != nil {
		log.Fatal(err)
	}
	kinds := engine.NewRegistry()
	kinds.Register("connect-greet", kind)
	srv, err := proxy.New(proxy.Config{Kinds: kinds, Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, srv.QUICConfig(nil))
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	// The client: quic-go's HTTP/3 client with HTTP datagrams.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	clientTLS := cert.ClientTLS()
	clientTLS.NextProtos = []string{http3.NextProtoH3}
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS, &quic.Config{EnableDatagrams: true})
	if err != nil {
		log.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)
	for _, path := range []string{"/greet/hello/", "/elsewhere"} {
		u, _ := url.Parse("https://" + ln.Addr().String() + path)
		str, err := cc.OpenRequestStream(ctx)
		if err != nil {
			log.Fatal(err)
		}
		err = str.SendRequestHeader((&http.Request{Method: http.MethodConnect, Proto: "connect-greet",
			Host: u.Host, URL: u, Header: http.Header{"Capsule-Protocol": {"?1"}}}).WithContext(ctx))
		if err != nil {
			log.Fatal(err)
		}
		resp, err := str.ReadResponse()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(path, resp.StatusCode)
		if resp.StatusCode != http.StatusOK {
			continue
		}
		// Datagrams can be lost: send until one comes back.
		for {
			str.SendDatagram([]byte("\x00world"))
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			d, err := str.ReceiveDatagram(rctx)
			rcancel()
			if err == nil {
				fmt.Printf("%s\n", d[1:])
				break
			}
			if ctx.Err() != nil {
				log.Fatal(err)
			}
		}
		str.Close()
	}
	// Output:
	// /greet/hello/ 200
	// hello, world
	// /elsewhere 404
}
