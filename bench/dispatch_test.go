package bench

import (
	"fmt"
	"testing"

	"github.com/masqroute/masqroute/bench/baseline"
)

// BenchmarkDispatch measures Dispatch throughput with GOMAXPROCS dispatchers
// sharing one router; see the package doc for the workload and the meaning
// of each metric.
func BenchmarkDispatch(b *testing.B) {
	defer closeCached()
	for _, im := range baseline.Impls {
		b.Run("impl="+im.Name, func(b *testing.B) {
			for _, n := range []int{1, 1000, 100_000, bigSessions} {
				b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
					if n >= bigSessions && testing.Short() {
						b.Skip("1M sessions: skipped under -short")
					}
					for _, churn := range []bool{false, true} {
						b.Run(fmt.Sprintf("churn=%d", b2i(churn)), func(b *testing.B) {
							s := getSetup(b, setupKey{impl: im.Name, sessions: n})
							w := startWindow(b, s, churn)
							b.RunParallel(s.dispatchLoop)
							w.stop(b)
						})
					}
				})
			}
		})
	}
}

// BenchmarkDispatchBurst is BenchmarkDispatch without churn, with the
// datagrams arriving in bursts of 16 per session (a flow's packet train)
// instead of one at a time. It is not one of the required scenarios: it
// shows what each design costs once its consumers' wake-ups are shared by
// several datagrams, which a random walk over 1000 or more sessions never
// allows.
func BenchmarkDispatchBurst(b *testing.B) {
	defer closeCached()
	for _, im := range baseline.Impls {
		b.Run("impl="+im.Name, func(b *testing.B) {
			for _, n := range []int{1000, 100_000} {
				b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
					if n > 1000 && testing.Short() {
						b.Skip("skipped under -short")
					}
					s := getSetup(b, setupKey{impl: im.Name, sessions: n})
					w := startWindow(b, s, false)
					b.RunParallel(s.burstLoop)
					w.stop(b)
				})
			}
		})
	}
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
