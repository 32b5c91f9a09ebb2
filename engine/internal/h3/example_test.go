package h3

import (
	"fmt"
	"net/http"
)

// A CONNECT-UDP handler finds the Quarter Stream ID its HTTP Datagrams
// carry, and checks that the peer accepts HTTP Datagrams at all.
func ExampleRequestStream() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := RequestStream(r)
		if !ok || !s.Conn().Settings().Datagram {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		// HTTP Datagrams of this request carry s.StreamID()/4.
		fmt.Println(s.StreamID())
	})
	_ = handler
}
