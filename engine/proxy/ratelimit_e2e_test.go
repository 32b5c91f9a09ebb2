package proxy_test

import (
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/proxy"
)

// A flood through one tunnel is cut to the tunnel's rate (± its burst) and
// counted as rate_limited; a tunnel on another connection, under its own
// rate, is unaffected.
func TestRateLimitTunnelFlood(t *testing.T) {
	const rate = 500 // datagrams/s per tunnel
	burst := 100 * time.Millisecond
	flood, quiet := newUDPSink(t), newUDPSink(t)
	env := startProxy(t, proxy.Config{
		RingSize:            1024,
		MaxAmplification:    -1, // measure the rate limit alone
		RateTunnelDatagrams: rate,
		RateBurst:           burst,
	})
	tunnel := func(target string) (*rawTunnelConn, []byte) {
		c := env.rawTunnelDial(t)
		str := c.open(t)
		require.Equal(t, 200, c.connect(t, str, target).StatusCode)
		d := quicvarint.Append(nil, uint64(str.StreamID())/4)
		d = quicvarint.Append(d, 0)
		return c, append(d, make([]byte, 100)...)
	}
	c1, d1 := tunnel(flood.addr())
	c2, d2 := tunnel(quiet.addr())

	const bursts, floodBurst, quietBurst = 30, 100, 1 // the quiet one: 30 in all, under its burst of 50
	start := time.Now()
	for i := range bursts {
		for range floodBurst {
			require.NoError(t, c1.qc.SendDatagram(d1))
		}
		for range quietBurst {
			require.NoError(t, c2.qc.SendDatagram(d2))
		}
		keepUp(t, env, func(st proxy.Stats) uint64 { return st.Router.Dispatched }, uint64((i+1)*(floodBurst+quietBurst)))
	}
	elapsed := time.Since(start)
	require.Eventually(t, func() bool { return quiet.packets.Load() == bursts*quietBurst }, 5*time.Second, 10*time.Millisecond,
		"the quiet tunnel on another connection loses nothing")
	time.Sleep(100 * time.Millisecond) // let the flood's last datagrams land
	st := env.proxy.Stats()
	bound := uint64(rate*(elapsed+burst+100*time.Millisecond).Seconds()) + 1
	t.Logf("flood: %d sent in %v, %d arrived (bound %d), rate_limited %d, ring full %d",
		bursts*floodBurst, elapsed, flood.packets.Load(), bound, st.DropRateLimited, st.Router.DroppedRingFull)
	require.LessOrEqual(t, flood.packets.Load(), bound, "the flood is cut to rate × time + burst")
	require.GreaterOrEqual(t, flood.packets.Load(), uint64(rate*burst.Seconds()), "the burst passes")
	require.Positive(t, st.DropRateLimited)
	require.Equal(t, uint64(bursts*floodBurst), flood.packets.Load()+st.DropRateLimited+st.Router.DroppedRingFull,
		"every flood datagram arrived or was counted")
}
