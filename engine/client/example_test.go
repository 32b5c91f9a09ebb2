package client_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/devcert"
	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/policy"
	"github.com/masqroute/masqroute/engine/proxy"
)

// Open two UDP tunnels over one HTTP/3 connection to a proxy.
func ExampleConn_DialUDP() {
	// A proxy and an echo target on loopback, for the example.
	cert, _ := devcert.Loopback()
	target, _ := echo.Listen("127.0.0.1:0")
	defer target.Close()
	pol, _ := policy.New(policy.Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	srv, _ := proxy.New(proxy.Config{Policy: pol})
	tlsConf := cert.ServerTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, srv.QUICConfig(nil))
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, ln.Addr().String(), &client.Config{TLSConfig: cert.ClientTLS()})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for i := range 2 {
		tunnel, err := conn.DialUDP(ctx, target.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(tunnel, "hello from tunnel %d", i)
		tunnel.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, err := tunnel.Read(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s (stream %d)\n", buf[:n], tunnel.StreamID())
		tunnel.Close()
	}
	// Output:
	// hello from tunnel 0 (stream 0)
	// hello from tunnel 1 (stream 4)
}
