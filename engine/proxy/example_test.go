package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine"
	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// exampleSetup returns a certificate, a policy that lets tunnels reach
// loopback (where the examples' echo target runs) and the echo target.
func exampleSetup() (*devcert.Cert, *policy.Policy, *echo.Server) {
	cert, err := devcert.Loopback()
	if err != nil {
		log.Fatal(err)
	}
	pol, err := policy.New(policy.Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		log.Fatal(err)
	}
	target, err := echo.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return cert, pol, target
}

// exampleEcho opens a tunnel through the proxy at addr and echoes one
// datagram.
func exampleEcho(addr string, cert *devcert.Cert, target netip.AddrPort) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, &client.Config{TLSConfig: cert.ClientTLS()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	tunnel, err := c.DialUDP(ctx, target.String())
	if err != nil {
		log.Fatal(err)
	}
	defer tunnel.Close()
	tunnel.Write([]byte("ping"))
	tunnel.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := tunnel.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo: %s\n", buf[:n])
}

// Serve a quic.Listener: the proxy accepts its connections itself.
func ExampleProxy_Serve() {
	cert, pol, target := exampleSetup()
	defer target.Close()

	srv, err := proxy.New(proxy.Config{Policy: pol})
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

	exampleEcho(ln.Addr().String(), cert, target.Addr())
	// Output: echo: ping
}

// Hand masqroute connections accepted by your own listener, for instance
// after your own admission checks.
func ExampleProxy_ServeConn() {
	cert, pol, target := exampleSetup()
	defer target.Close()

	srv, err := proxy.New(proxy.Config{Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, srv.QUICConfig(&quic.Config{MaxIdleTimeout: time.Minute}))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go srv.ServeConn(conn) // returns when the connection ends
		}
	}()
	defer srv.Close()

	exampleEcho(ln.Addr().String(), cert, target.Addr())
	// Output: echo: ping
}

// Mount masqroute's MASQUE handler beside your own HTTP/3 routes.
func ExampleProxy_MASQUEHandler() {
	cert, pol, target := exampleSetup()
	defer target.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "all good")
	})
	srv, err := proxy.New(proxy.Config{Policy: pol, Handler: mux})
	if err != nil {
		log.Fatal(err)
	}
	mux.Handle("/.well-known/masque/", srv.MASQUEHandler())

	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, srv.QUICConfig(nil))
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	// Your route, over plain HTTP/3.
	tr := &http3.Transport{TLSClientConfig: cert.ClientTLS()}
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/status")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("status: %s\n", body)
	// And a tunnel, on the same listener.
	exampleEcho(ln.Addr().String(), cert, target.Addr())
	// Output:
	// status: all good
	// echo: ping
}

// Plug in a session kind of your own for another :protocol, and a policy of
// your own. The kind gets the request in Args.Value as *proxy.Request.
func ExampleConfig_kinds() {
	cert, _, target := exampleSetup()
	defer target.Close()

	kinds := engine.NewRegistry()
	kinds.Register("connect-example", engine.KindFunc(
		func(ctx context.Context, s *engine.Session, args engine.Args) (engine.Handler, error) {
			req := args.Value.(*proxy.Request)
			fmt.Printf("starting %s tunnel on stream %d for %s\n", args.Protocol, s.StreamID(), req.HTTP.URL.Path)
			return countingHandler{}, nil
		}))
	onlyPort := policyFunc(func(ap netip.AddrPort) error {
		if ap.Port() != target.Addr().Port() {
			return fmt.Errorf("port %d not allowed", ap.Port())
		}
		return nil
	})
	srv, err := proxy.New(proxy.Config{Kinds: kinds, Policy: onlyPort})
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

	// Any HTTP/3 client can ask for the custom protocol.
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
	u, _ := url.Parse("https://" + ln.Addr().String() + "/custom")
	resp, err := cc.RoundTrip((&http.Request{Method: http.MethodConnect, Proto: "connect-example",
		Host: u.Host, URL: u, Header: http.Header{}}).WithContext(ctx))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("custom kind answered", resp.StatusCode)
	// The proxy's own CONNECT-UDP kind uses the custom policy.
	exampleEcho(ln.Addr().String(), cert, target.Addr())
	// Output:
	// starting connect-example tunnel on stream 0 for /custom
	// custom kind answered 200
	// echo: ping
}

type countingHandler struct{}

func (countingHandler) HandleDatagrams([][]byte) {}
func (countingHandler) Close(error)              {}

type policyFunc func(netip.AddrPort) error

func (f policyFunc) Check(ap netip.AddrPort) error { return f(ap) }

// Serve CONNECT-UDP from an http3.Server you already run (coming from
// masque-go, say): mount the proxy's HTTP3Handler beside your routes. It
// runs on quic-go's own datagram path, which is slower than Serve and
// ServeConn (see docs/embedding.md).
func ExampleProxy_HTTP3Handler() {
	cert, pol, target := exampleSetup()
	defer target.Close()

	srv, err := proxy.New(proxy.Config{Policy: pol})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/.well-known/masque/udp/", srv.HTTP3Handler())
	h3srv := &http3.Server{
		Handler:         mux,
		TLSConfig:       http3.ConfigureTLSConfig(cert.ServerTLS()),
		QUICConfig:      srv.QUICConfig(nil),
		EnableDatagrams: true,
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	go h3srv.Serve(pc)
	defer h3srv.Close()

	exampleEcho(pc.LocalAddr().String(), cert, target.Addr())
	fmt.Println("tunnels opened:", srv.Stats().TunnelsOpened)
	// Output:
	// echo: ping
	// tunnels opened: 1
}
