package proxy

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks, after the internal and the external tests alike, that no
// goroutine of a proxy, tunnel or router outlived its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
