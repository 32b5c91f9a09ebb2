package proxy_test

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine/client"
	"github.com/masqroute/masqroute/engine/proxy"
)

// victimStats is what a paced, closed-loop echo tunnel saw.
type victimStats struct {
	sent, lost int
	p50, p99   time.Duration
}

// runVictim sends n pings, one at a time, every interval, and waits up to
// timeout for each echo.
func runVictim(t testing.TB, u *client.UDPConn, n int, interval, timeout time.Duration) victimStats {
	t.Helper()
	var rtts []time.Duration
	buf := make([]byte, 2048)
	msg := make([]byte, 200)
	st := victimStats{sent: n}
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		begin := time.Now()
		_, err := u.Write(msg)
		require.NoError(t, err)
		u.SetReadDeadline(begin.Add(timeout))
		for {
			k, err := u.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				st.lost++
				break
			}
			require.NoError(t, err)
			if k >= 4 && binary.BigEndian.Uint32(buf) == uint32(i) {
				rtts = append(rtts, time.Since(begin))
				break
			}
			// a late echo of an earlier ping: keep waiting
		}
		time.Sleep(interval)
	}
	slices.Sort(rtts)
	if len(rtts) > 0 {
		st.p50 = rtts[len(rtts)/2]
		st.p99 = rtts[len(rtts)*99/100]
	}
	return st
}

// Fairness: one tunnel flooding at full speed, into a target that never
// reads, does not raise another tunnel's loss or p99 latency beyond the
// stated bound. Each session has its own ring, so the flood can only fill
// its own; on this 2-core machine what the victim feels is CPU contention.
//
// Bound (docs/reliability.md): no loss for the victim, and its p99 under
// the flood within 10× its p99 alone plus 50 ms.
func TestFloodDoesNotHurtOtherTunnels(t *testing.T) {
	if testing.Short() || proxy.RaceEnabled {
		t.Skip("a timing test: not under -short or the race detector")
	}
	env := startProxy(t, proxy.Config{})
	victim := dialUDP(t, env.dial(t), env.echo.Addr().String())
	const pings, interval, timeout = 150, 2 * time.Millisecond, 500 * time.Millisecond

	alone := runVictim(t, victim, pings, interval, timeout)

	// The slow target: a socket nobody reads.
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sink.Close()
	flood := dialUDP(t, env.dial(t), sink.LocalAddr().String()) // its own connection
	stop := make(chan struct{})
	var flooded int
	var wg sync.WaitGroup
	wg.Go(func() {
		payload := make([]byte, 1200)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := flood.Write(payload); err == nil {
				flooded++
			}
		}
	})
	time.Sleep(50 * time.Millisecond) // let the flood build up
	during := runVictim(t, victim, pings, interval, timeout)
	close(stop)
	wg.Wait()

	st := env.proxy.Stats()
	t.Logf("victim alone: p50 %v p99 %v lost %d/%d", alone.p50, alone.p99, alone.lost, alone.sent)
	t.Logf("victim during flood: p50 %v p99 %v lost %d/%d", during.p50, during.p99, during.lost, during.sent)
	t.Logf("flood: %d written by the client, %d dispatched, %d to the slow target, %d dropped by the router (ring full %d)",
		flooded, st.Router.Dispatched, st.ToTarget, st.Router.Dropped(), st.Router.DroppedRingFull)
	require.Zero(t, during.lost, "the victim lost datagrams during the flood")
	require.LessOrEqual(t, during.p99, 10*alone.p99+50*time.Millisecond, "victim p99 under the flood")
}
