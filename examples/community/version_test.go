package main

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfoString(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/treff-im/treff", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "-race", Value: "false"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "cf31cd83fecbfabbf68c8c3ae14063d53d9c2641"},
			{Key: "vcs.time", Value: "2026-12-06T22:10:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	b := parseBuildInfo(bi)
	want := buildInfo{Module: "github.com/treff-im/treff", Version: "v0.4.0", Go: "go1.26.8",
		Revision: "cf31cd83fecbfabbf68c8c3ae14063d53d9c2641", Time: "2026-12-06T22:10:00Z", Modified: true}
	if b != want {
		t.Fatalf("parseBuildInfo: %+v, want %+v", b, want)
	}
	if got, want := b.String(), "community github.com/treff-im/treff v0.4.0 (revision cf31cd83fecbfabbf68c8c3ae14063d53d9c2641, 2026-12-06T22:10:00Z, modified) go1.26.8"; got != want {
		t.Errorf("String:\n got %s\nwant %s", got, want)
	}
	b.Modified = false
	if got := b.String(); strings.Contains(got, "modified") {
		t.Errorf("not modified: %s", got)
	}
	none := parseBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/treff-im/treff", Version: "(devel)"}})
	if got := none.String(); !strings.Contains(got, "(devel) (no revision recorded") {
		t.Errorf("without VCS information: %s", got)
	}
}

func TestVersionCommand(t *testing.T) {
	want, ok := readBuildInfo()
	if !ok {
		t.Skip("the test binary carries no build information")
	}
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var stdout, stderr strings.Builder
		if code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != exitOK {
			t.Errorf("%q: exit %d: %s", args, code, stderr.String())
		}
		if got := strings.TrimSpace(stdout.String()); got != want.String() {
			t.Errorf("%q printed %q, want %q", args, got, want.String())
		}
	}
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"version", "extra"}, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Errorf("version extra: exit %d, want %d", code, exitUsage)
	}
}
