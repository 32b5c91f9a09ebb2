package proxy

import (
	"net"

	"github.com/masqroute/masqroute/engine/internal/udpio"
)

// BatchedQUICConn wraps the UDP socket a quic.Transport is to use so that
// quic-go's packet writes go out in batches: each write is queued, and one
// flusher goroutine per socket sends what the connections queued with
// sendmmsg, same-size runs to one client merged by UDP GSO (see
// udpio.QUICConn for what that changes for quic-go). The result owns uc:
// give it as quic.Transport.Conn and close it after the Transport. Off
// Linux it returns uc unchanged.
func BatchedQUICConn(uc *net.UDPConn) (net.PacketConn, error) { return udpio.WrapQUIC(uc) }
