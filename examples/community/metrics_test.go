package main

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"
)

// metrics = yes means the loopback default; no and empty disable it; the
// flag is -metrics.
func TestMetricsConfig(t *testing.T) {
	for in, want := range map[string]string{"yes": defaultMetricsAddr, "YES": defaultMetricsAddr, "no": "", "": "", "[::1]:9155": "[::1]:9155"} {
		c, err := ParseConfig("x.conf", strings.NewReader("metrics = "+in+"\n"))
		if err != nil || c.Metrics != want {
			t.Errorf("metrics = %q: got %q, %v; want %q", in, c.Metrics, err, want)
		}
	}
	c, err := loadConfig("", []setting{{"metrics", "yes"}})
	if err != nil || c.Metrics != defaultMetricsAddr {
		t.Errorf("-metrics yes: %q, %v", c.Metrics, err)
	}
}

// The histogram's buckets are cumulative in the output, end with +Inf,
// and _count and _sum agree with what was observed.
func TestHistogram(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{30 * time.Microsecond, 700 * time.Microsecond, 700 * time.Microsecond, 3 * time.Second} {
		h.observe(d)
	}
	var sb strings.Builder
	metricWriter{&sb}.histogram(&h, "x_seconds", "op", "y")
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(sb.String()))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("bad line %q", sc.Text())
		}
		got[name] = value
	}
	for name, want := range map[string]string{
		`x_seconds_bucket{op="y",le="5e-05"}`:  "1",
		`x_seconds_bucket{op="y",le="0.0005"}`: "1",
		`x_seconds_bucket{op="y",le="0.001"}`:  "3",
		`x_seconds_bucket{op="y",le="2.5"}`:    "3",
		`x_seconds_bucket{op="y",le="+Inf"}`:   "4",
		`x_seconds_count{op="y"}`:              "4",
		`x_seconds_sum{op="y"}`:                "3.00143",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q\n%s", name, got[name], want, sb.String())
		}
	}
}

// Without a server's modules and store the endpoint still writes the
// core and runtime series, each family once.
func TestMetricsWithoutStore(t *testing.T) {
	srv := newServer(Default(), nil, nil, nil, nil)
	var sb strings.Builder
	(&metricsHandler{srv: srv}).write(context.Background(), &sb)
	out := sb.String()
	for _, fam := range []string{"treff_sessions", "treff_stanzas_in_total", "treff_deliveries_total", "treff_queue_drops_total", "treff_registrations_total", "go_goroutines", "go_gc_cycles_total"} {
		if n := strings.Count(out, "# TYPE "+fam+" "); n != 1 {
			t.Errorf("# TYPE %s: %d times", fam, n)
		}
	}
	if strings.Contains(out, "treff_storage_seconds") || strings.Contains(out, "treff_offline_messages") {
		t.Errorf("storage series without a store:\n%s", out)
	}
}
