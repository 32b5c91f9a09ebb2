package proxy

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks, after the internal and the external tests alike, that no
// goroutine of a proxy, tunnel or router outlived its test.
//
// The HTTP/2 carrier's tests need GODEBUG=http2xconnect=1 from the start
// (net/http reads it at init): the test binary re-executes itself with it.
func TestMain(m *testing.M) {
	if err := ReexecWithExtendedConnect(); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
