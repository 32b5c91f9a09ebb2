package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks, after the tests and benchmarks, that no router, session
// or churner goroutine outlived its benchmark.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
