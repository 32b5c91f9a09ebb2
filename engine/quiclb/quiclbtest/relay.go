// Package quiclbtest has test helpers for services behind quiclb: a UDP
// relay on loopback that plays a NAT whose mapping changes.
package quiclbtest

import (
	"net"
	"sync"
)

// A Relay forwards datagrams between one client and a server on loopback,
// as a NAT does: the server sees the relay's back socket as the client's
// address. Rebind gives it a new back socket, a new source port, as a NAT
// does when its mapping expires; replies to the old one are lost.
type Relay struct {
	front  *net.UDPConn // the client sends here
	server net.Addr
	wg     sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	back   *net.UDPConn
	client net.Addr
	all    []*net.UDPConn // every back socket, for Close
}

// NewRelay starts a relay to server; clients dial Addr.
func NewRelay(server net.Addr) (*Relay, error) {
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &Relay{front: front, server: server}
	if err := r.Rebind(); err != nil {
		front.Close()
		return nil, err
	}
	r.wg.Go(func() {
		readLoop(front, func(b []byte, from net.Addr) {
			r.mu.Lock()
			r.client = from
			back := r.back
			r.mu.Unlock()
			back.WriteTo(b, server)
		})
	})
	return r, nil
}

// Addr is where the client sends.
func (r *Relay) Addr() net.Addr { return r.front.LocalAddr() }

// Rebind moves the relay to a new source port toward the server.
func (r *Relay) Rebind() error {
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.back = back
	r.all = append(r.all, back)
	r.mu.Unlock()
	r.wg.Go(func() {
		readLoop(back, func(b []byte, _ net.Addr) {
			r.mu.Lock()
			client, current := r.client, r.back == back
			r.mu.Unlock()
			if client != nil && current {
				r.front.WriteTo(b, client)
			}
		})
	})
	return nil
}

// Close stops the relay and waits for its goroutines.
func (r *Relay) Close() error {
	r.front.Close()
	r.mu.Lock()
	for _, b := range r.all {
		b.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// readLoop hands every datagram c receives to f until c is closed.
func readLoop(c *net.UDPConn, f func(b []byte, from net.Addr)) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		f(buf[:n], from)
	}
}
