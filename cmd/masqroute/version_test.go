package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionString(t *testing.T) {
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name    string
		bi      *debug.BuildInfo
		stamped string
		want    string
	}{
		{"no build info", nil, "", "masqroute unknown commit unknown " + runtime.Version()},
		{"buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"", "masqroute (devel) commit unknown go1.26.8"},
		{"buildvcs=true", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}},
			"", "masqroute v1.2.3 commit 0123456789ab go1.26.8"},
		{"modified tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}},
			"", "masqroute (devel) commit 0123456789ab-dirty go1.26.8"},
		{"stamped by make", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}}},
			"abc1234", "masqroute (devel) commit abc1234 go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want+platform, versionString(tc.bi, tc.bi != nil, tc.stamped))
		})
	}
}

func TestVersionCommands(t *testing.T) {
	var sub, flag bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"version"}, &sub, io.Discard))
	require.NoError(t, run(context.Background(), []string{"-version"}, &flag, io.Discard))
	require.Equal(t, sub.String(), flag.String())
	require.Equal(t, buildVersion()+"\n", sub.String())
	require.Contains(t, sub.String(), " "+runtime.Version()+" ")
	require.Equal(t, 1, strings.Count(sub.String(), "\n"))
}

// TestVersionStampedBinary builds the binary as the Makefile does and
// checks that -version shows the stamped commit: main.commit is the name
// the -X flag must match.
func TestVersionStampedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goCmd, err := exec.LookPath(filepath.Join(runtime.GOROOT(), "bin", "go"))
	if err != nil {
		t.Skip("no go command:", err)
	}
	bin := filepath.Join(t.TempDir(), "masqroute")
	out, err := exec.Command(goCmd, "build", "-ldflags", "-X main.commit=abc1234", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "-version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `^masqroute \S+ commit abc1234 go1\.\S+ \S+/\S+\n$`, string(out))
}
