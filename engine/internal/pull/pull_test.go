package pull

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSetGet(t *testing.T) {
	defer func(old any) { ops = old }(ops)
	ops = nil
	type sess struct{ n int }
	require.Panics(t, func() { Get[sess]() })
	Set(Ops[sess]{Pop: func(s *sess, dst [][]byte) int { return s.n }})
	require.Equal(t, 3, Get[sess]().Pop(&sess{n: 3}, nil))
	require.Panics(t, func() { Get[int]() }, "another session type")
	require.Panics(t, func() { Set(Ops[sess]{}) }, "a second Set")
}
