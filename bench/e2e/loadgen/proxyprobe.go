package loadgen

import (
	"context"

	"github.com/masqroute/masqroute/engine/echo"
	"github.com/masqroute/masqroute/engine/proxy"
)

// ProxyProbe reads a masqroute proxy's counters in process (the same ones
// its /metrics serves; PrometheusProbe reads them from there).
func ProxyProbe(p *proxy.Proxy) Probe {
	return ProbeFunc(func(context.Context) (Counters, error) {
		st := p.Stats()
		drops := routerDrops("proxy.", st.Router)
		for k, v := range map[string]uint64{
			"malformed":         st.DropMalformed,
			"unknown_context":   st.DropUnknownContext,
			"oversize":          st.DropOversize,
			"send_error":        st.DropSendError,
			"return_oversize":   st.DropReturnOversize,
			"return_send_error": st.DropReturnSendError,
			"return_queue_full": st.DropReturnQueueFull,
			"return_closed":     st.DropReturnClosed,
			"capsule_error":     st.CapsuleErrors,
			"datagram_error":    st.DatagramErrors,
		} {
			drops["proxy."+k] = v
		}
		return Counters{Hops: proxyHops(st.Router.Dispatched, st.Router.Delivered, st.ToTarget, st.ToClient), Drops: drops,
			DataPath: dataPathCounts(st.DataPath)}, nil
	})
}

func proxyHops(dispatched, delivered, toTarget, toClient uint64) []Hop {
	return []Hop{
		{Stage: StageProxyIn, Name: "proxy: router dispatched", Count: dispatched},
		{Stage: StageProxyRouted, Name: "proxy: router delivered", Count: delivered},
		{Stage: StageProxyToTarget, Name: "proxy: to target", Count: toTarget},
		{Stage: StageProxyToClient, Name: "proxy: to client", Count: toClient},
	}
}

// EchoProbe reads an echo target's counters.
func EchoProbe(s *echo.Server) Probe {
	return ProbeFunc(func(context.Context) (Counters, error) {
		return Counters{Hops: []Hop{
			{Stage: StageTargetIn, Name: "echo: received", Count: s.Received.Load()},
			{Stage: StageTargetOut, Name: "echo: sent", Count: s.Sent.Load()},
		}}, nil
	})
}
