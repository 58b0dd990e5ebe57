package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/trefftest"
)

func TestScenarios(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = im.Modules() })
	for i := 0; i < 4; i++ {
		ts.AddUser(t, fmt.Sprintf("load%d", i), "loadtest-password")
	}
	for _, tc := range []struct{ scenario, mech string }{
		{"login", "SCRAM-SHA-256"}, {"chat", "PLAIN"}, {"chat", "SCRAM-SHA-1"}, {"idle", "PLAIN"},
	} {
		t.Run(tc.scenario+"-"+tc.mech, func(t *testing.T) {
			c := config{addr: ts.Addr, domain: "localhost", prefix: "load", password: "loadtest-password",
				mech: tc.mech, scenario: tc.scenario, users: 4, duration: 500 * time.Millisecond,
				pid: os.Getpid(), insecure: true, timeout: 5 * time.Second}
			r, err := run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			r.print(&out)
			t.Log(out.String())
			if r.errors != 0 || r.ops == 0 {
				t.Fatalf("errors=%d ops=%d first=%s", r.errors, r.ops, r.firstErr)
			}
			if tc.scenario == "chat" && (len(r.latencies) == 0 || !strings.Contains(out.String(), "latency p50=")) {
				t.Error("no latencies")
			}
			if r.rss1 == 0 || !strings.Contains(out.String(), "server rss_before=") {
				t.Error("no /proc readings")
			}
		})
	}
	// A wrong password is counted as an error, not a hang.
	c := config{addr: ts.Addr, domain: "localhost", prefix: "load", password: "wrong", mech: "PLAIN",
		scenario: "idle", users: 2, duration: 100 * time.Millisecond, timeout: 5 * time.Second, insecure: true}
	r, err := run(context.Background(), c)
	if err != nil || r.errors != 2 || !strings.Contains(r.firstErr, "authentication failed") {
		t.Errorf("wrong password: %v errors=%d first=%q", err, r.errors, r.firstErr)
	}
}
