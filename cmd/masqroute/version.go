package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// commit is the commit this binary was built from, stamped by the Makefile
// with -ldflags "-X main.commit=...". This machine's Go sets
// GOFLAGS=-buildvcs=false, so the build info carries no vcs.revision unless
// the build asked for it; version falls back to that, then to "unknown".
var commit string

// versionString is the one line `masqroute -version` prints: module
// version, commit, Go version and platform. It says "unknown" for what the
// build did not record rather than guess.
func versionString(bi *debug.BuildInfo, ok bool, stamped string) string {
	version, rev, goVersion := buildFields(bi, ok, stamped)
	return fmt.Sprintf("masqroute %s commit %s %s %s/%s", version, rev, goVersion, runtime.GOOS, runtime.GOARCH)
}

// buildFields are the module version, commit and Go version of a build,
// "unknown" where it recorded none: for -version and masqroute_build_info.
func buildFields(bi *debug.BuildInfo, ok bool, stamped string) (version, rev, goVersion string) {
	version, rev, goVersion = "unknown", "unknown", runtime.Version()
	if ok && bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version // "(devel)" for a build from a checkout
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "unknown" {
			rev = rev[:min(len(rev), 12)]
			if modified {
				rev += "-dirty"
			}
		}
	}
	if stamped != "" {
		rev = stamped
	}
	return version, rev, goVersion
}

// buildVersion is versionString for this binary.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	return versionString(bi, ok, commit)
}

// buildInfo is buildFields for this binary.
func buildInfo() (version, rev, goVersion string) {
	bi, ok := debug.ReadBuildInfo()
	return buildFields(bi, ok, commit)
}
