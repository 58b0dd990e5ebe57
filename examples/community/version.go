package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// buildInfo describes the binary: the module version and the version
// control state it was built from, as the Go toolchain records them
// (runtime/debug.ReadBuildInfo).
type buildInfo struct {
	Module   string // the main module's path
	Version  string // its version: a tag, a pseudo-version or "(devel)"
	Go       string // the Go version that built it
	Revision string // vcs.revision, empty if not recorded
	Time     string // vcs.time (RFC 3339), empty if not recorded
	Modified bool   // vcs.modified: the work tree had changes
}

// revision, if set at link time (go build -ldflags "-X
// main.revision=$(git rev-parse HEAD)"), stands in for a missing
// vcs.revision: the go command records none in a linked git worktree
// (golang/go#58218) or outside a git checkout.
var revision string

// readBuildInfo returns the binary's build information; ok is false when
// the binary carries none.
func readBuildInfo() (b buildInfo, ok bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{}, false
	}
	b = parseBuildInfo(bi)
	if b.Revision == "" {
		b.Revision = revision
	}
	return b, true
}

// parseBuildInfo picks what the version command prints out of bi.
func parseBuildInfo(bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the version line: "community MODULE VERSION (revision R,
// TIME[, modified]) GO".
func (b buildInfo) String() string {
	version := b.Version
	if version == "" {
		version = "(devel)"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "community %s %s", b.Module, version)
	switch {
	case b.Revision != "":
		fmt.Fprintf(&sb, " (revision %s", b.Revision)
		if b.Time != "" {
			fmt.Fprintf(&sb, ", %s", b.Time)
		}
		if b.Modified {
			sb.WriteString(", modified")
		}
		sb.WriteString(")")
	default:
		sb.WriteString(" (no revision recorded: built outside a git clone, in a git worktree or with -buildvcs=false)")
	}
	if b.Go != "" {
		fmt.Fprintf(&sb, " %s", b.Go)
	}
	return sb.String()
}

// cmdVersion prints the version line; it takes no arguments.
func cmdVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			fmt.Fprintln(stdout, "Usage: community version   (or community -version)")
			return nil
		}
		return usageErrorf("version takes no arguments")
	}
	b, ok := readBuildInfo()
	if !ok {
		return fmt.Errorf("this binary carries no build information")
	}
	fmt.Fprintln(stdout, b)
	return nil
}
