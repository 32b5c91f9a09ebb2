//go:build !linux

package udpio

import "net"

// WrapQUIC returns uc as it is: batched writes toward clients are Linux
// only (sendmmsg, UDP GSO).
func WrapQUIC(uc *net.UDPConn) (net.PacketConn, error) { return uc, nil }
