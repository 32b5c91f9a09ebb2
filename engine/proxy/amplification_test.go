package proxy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The budget: the allowance first, then 3× what arrived; nothing past it.
func TestAmpBudget(t *testing.T) {
	var rx uint64
	b := newAmpBudget(3, 1000, func() uint64 { return rx })
	require.True(t, b.take(600))
	require.True(t, b.take(400))
	require.False(t, b.take(1), "allowance spent, nothing received")
	rx += 100
	require.True(t, b.take(300))
	require.False(t, b.take(1))
	// A new window restores the allowance, not what was left.
	b.windowEnd = 0
	require.True(t, b.take(1000))
	require.False(t, b.take(1))
	var nilBudget *ampBudget
	require.True(t, nilBudget.take(1<<40), "nil: no bound")
}

// Taking from the budget allocates nothing, on the fast path or the refill.
func TestAmpBudgetDoesNotAllocate(t *testing.T) {
	var rx uint64
	b := newAmpBudget(3, 64<<10, func() uint64 { return rx })
	allocs := testing.AllocsPerRun(1000, func() {
		rx += 10
		b.take(28)
		b.take(1 << 20) // fails: the refill path
	})
	require.Zero(t, allocs)
}
