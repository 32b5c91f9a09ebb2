package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1": 1, "512B": 512, "64KiB": 64 << 10, "512MiB": 512 << 20, "1GiB": 1 << 30,
		"3TiB": 3 << 40, "1073741824": 1 << 30, "off": math.MaxInt64,
	} {
		var b byteSize
		require.NoError(t, b.Set(in), in)
		require.Equal(t, want, int64(b), in)
		var again byteSize
		require.NoError(t, again.Set(b.String()), "%s → %s", in, b.String())
		require.Equal(t, b, again)
	}
	require.Equal(t, "512MiB", byteSize(512<<20).String())
	require.Equal(t, "1536KiB", byteSize(1536<<10).String())
	require.Equal(t, "0B", byteSize(0).String())
	for _, bad := range []string{"", "1GB", "1 GiB", "-1", "1.5GiB", "GiB", "1gib", "9999999TiB", "ten"} {
		var b byteSize
		require.Error(t, b.Set(bad), bad)
	}
}

// -workers, -gc-percent and -memory-limit reach the proxy and the runtime.
func TestRuntimeFlags(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	c, err := parseServeFlags([]string{"-self-signed", "-workers", "3", "-gc-percent", "250", "-memory-limit", "512MiB"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 3, c.proxyConfig(nil, nil, daemonAuth{}, nil).Workers)
	require.Equal(t, gcConfig{percent: 250, memLimit: 512 << 20, setPercent: true, setLimit: true}, c.gc)

	oldPercent, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) }()
	restore := c.gc.apply()
	require.Equal(t, 250, debug.SetGCPercent(250))
	require.Equal(t, int64(512<<20), debug.SetMemoryLimit(-1))
	restore()
	require.Equal(t, 100, debug.SetGCPercent(100), "apply's restore puts the old setting back")
	require.Equal(t, oldLimit, debug.SetMemoryLimit(-1))

	c, err = parseServeFlags([]string{"-self-signed"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, engine.DefaultWorkers(), c.proxyConfig(nil, nil, daemonAuth{}, nil).Workers)
	require.Equal(t, gcConfig{percent: defaultGCPercent, memLimit: defaultMemoryLimit, setPercent: true, setLimit: true}, c.gc)

	// GOGC and GOMEMLIMIT in the environment win over the defaults, not
	// over the flags.
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	c, err = parseServeFlags([]string{"-self-signed"}, io.Discard)
	require.NoError(t, err)
	require.False(t, c.gc.setPercent)
	require.False(t, c.gc.setLimit)
	p, l := c.gc.logValues()
	require.Equal(t, "GOGC=50", p)
	require.Equal(t, "GOMEMLIMIT=1GiB", l)
	c, err = parseServeFlags([]string{"-self-signed", "-gc-percent", "300"}, io.Discard)
	require.NoError(t, err)
	require.True(t, c.gc.setPercent)
	require.False(t, c.gc.setLimit)
	c, err = parseServeFlags([]string{"-self-signed", "-gc-percent", "-1", "-memory-limit", "1GiB"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, -1, c.gc.percent)
}

// A bad -workers, -gc-percent or -memory-limit is one line, as every
// command-line mistake is.
func TestRuntimeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-memory-limit", "1GB"}, "masqroute: invalid value \"1GB\" for flag -memory-limit: " +
			"\"1GB\" is not a size: a whole number of B, KiB, MiB, GiB or TiB (512MiB, 1GiB), or off\n" +
			"Run 'masqroute -help' for usage.\n"},
		{[]string{"-memory-limit", "-5MiB"}, "masqroute: invalid value \"-5MiB\" for flag -memory-limit: " +
			"\"-5MiB\" is not a size: a whole number of B, KiB, MiB, GiB or TiB (512MiB, 1GiB), or off\n" +
			"Run 'masqroute -help' for usage.\n"},
		{[]string{"-workers", "0"}, "masqroute: -workers must be at least 1\nRun 'masqroute -help' for usage.\n"},
		{[]string{"-gc-percent", "-5"}, "masqroute: -gc-percent must be -1 (off) or more\nRun 'masqroute -help' for usage.\n"},
		{[]string{"-gc-percent", "-1"}, "masqroute: -gc-percent -1 turns the collector off: give -memory-limit too, " +
			"or the heap grows without bound\nRun 'masqroute -help' for usage.\n"},
	} {
		var out, errOut, report bytes.Buffer
		err := run(context.Background(), append([]string{"-self-signed"}, tc.args...), &out, &errOut)
		require.Equal(t, 2, exitCode(err, &report), "%v", tc.args)
		require.Empty(t, out.String()+errOut.String())
		require.Equal(t, tc.want, report.String())
	}
}
