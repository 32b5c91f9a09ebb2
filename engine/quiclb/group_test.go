package quiclb

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func members(spec ...any) []Member {
	var ms []Member
	for i := 0; i < len(spec); i += 2 {
		ms = append(ms, Member{ServerID: spec[i].(ServerID), Transport: spec[i+1].(int)})
	}
	return ms
}

func TestLeaveMovesTheLastSocket(t *testing.T) {
	// [A0 A1 B0 B1]: closing A0 moves B1 to slot 0, closing A1 moves B0
	// to slot 1.
	group := members(sidA, 0, sidA, 1, sidB, 0, sidB, 1)
	require.Equal(t, members(sidB, 1, sidB, 0), Leave(group, sidA))
	require.Equal(t, []Route{{ServerID: sidB, Slots: []int{1, 0}}}, Routes(Leave(group, sidA)))
	// The last instance leaving moves nothing.
	require.Equal(t, members(sidA, 0, sidA, 1), Leave(group, sidB))
	// Interleaved: [A0 B0 A1 B1 B2].
	group = members(sidA, 0, sidB, 0, sidA, 1, sidB, 1, sidB, 2)
	require.Equal(t, members(sidB, 2, sidB, 0, sidB, 1), Leave(group, sidA))
	require.Equal(t, []int{0, 1}, LeaveOrder(group, sidA))
}

func TestRoutesFromMembers(t *testing.T) {
	require.Equal(t, []Route{
		{ServerID: sidA, Slots: []int{0, 2}},
		{ServerID: sidB, Slots: []int{1, Fallback, 3}}, // transport 1 has no socket
	}, Routes(members(sidA, 0, sidB, 0, sidA, 1, sidB, 2)))
}

func TestGroupFileRoundTrip(t *testing.T) {
	group := members(sidA, 0, sidB, 3)
	back, err := parseMembers(formatMembers(group))
	require.NoError(t, err)
	require.Equal(t, group, back)
	for _, bad := range []string{"0xa1 0\n", "0xa1a2a3a4a5a6a7a8\n", "0xa1a2a3a4a5a6a7a8 x\n", "0xa1a2a3a4a5a6a7a8 256\n"} {
		_, err := parseMembers([]byte(bad))
		require.Error(t, err, bad)
	}
}
