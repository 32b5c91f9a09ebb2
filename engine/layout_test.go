package engine

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// The session and ring sizes docs/architecture.md quotes ("Memory") are the
// real ones: a change to Session or ringbuf.Ring that moves them fails here
// until the document says the new numbers.
func TestDocumentedSessionSize(t *testing.T) {
	const session, ring = 624, 448 // bytes, on 64-bit platforms
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are documented for 64-bit platforms")
	}
	var s Session
	require.Equal(t, uintptr(session), unsafe.Sizeof(s), "Session size")
	require.Equal(t, uintptr(ring), unsafe.Sizeof(s.ring), "ring header size")

	doc, err := os.ReadFile("../docs/architecture.md")
	require.NoError(t, err)
	line := "| session with its ring header | 624 B, of which the ring header is 448 B"
	require.True(t, strings.Contains(string(doc), line), "docs/architecture.md must say: %s", line)
}
