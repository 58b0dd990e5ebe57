package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// report is the outcome of a run.
type report struct {
	cfg         config
	ops         int64         // logins, delivered messages or presences, or sessions held
	logins      int64         // presence: login cycles
	sent        int64         // chat, muc: messages sent; login with -rate: logins started
	rooms       int           // muc: rooms
	joinRetries int64         // muc: joins retried after a wait error
	settle      time.Duration // the wait for the server to go quiet after the setup
	errors      int64
	elapsed     time.Duration
	latencies   []time.Duration
	sessions    int
	rss0, rss1  int64 // bytes
	cpu0, cpu1  time.Duration
	firstErr    string
}

func percentile(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

// unit names what one op of the scenario is.
func (r *report) unit() string {
	switch r.cfg.scenario {
	case "login":
		return "logins"
	case "idle":
		return "sessions"
	case "presence":
		return "presences delivered"
	default:
		return "messages delivered"
	}
}

func (r *report) print(w io.Writer) {
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	fmt.Fprintf(w, "scenario=%s users=%d duration=%s mech=%s\n", r.cfg.scenario, r.cfg.users, r.elapsed.Round(time.Millisecond), r.cfg.mech)
	fmt.Fprintf(w, "ops=%d (%s) rate=%.1f/s errors=%d\n", r.ops, r.unit(), float64(r.ops)/r.elapsed.Seconds(), r.errors)
	if r.logins > 0 {
		fmt.Fprintf(w, "logins=%d\n", r.logins)
	}
	if r.sent > 0 {
		fmt.Fprintf(w, "sent=%d rate_sent=%.1f/s", r.sent, float64(r.sent)/r.elapsed.Seconds())
		if r.cfg.scenario == "muc" {
			fmt.Fprintf(w, " rooms=%d fanout=%.2f join_retries=%d", r.rooms, float64(r.ops)/float64(r.sent), r.joinRetries)
		}
		fmt.Fprintln(w)
	}
	if r.firstErr != "" {
		fmt.Fprintf(w, "first_error=%q\n", r.firstErr)
	}
	if len(r.latencies) > 0 {
		l := r.latencies
		fmt.Fprintf(w, "latency p50=%s p90=%s p99=%s max=%s\n", percentile(l, .5), percentile(l, .9), percentile(l, .99), l[len(l)-1])
	}
	if len(r.cfg.pids) > 0 {
		fmt.Fprintf(w, "server rss_before=%dKiB rss_after=%dKiB cpu=%s\n", r.rss0>>10, r.rss1>>10, (r.cpu1 - r.cpu0).Round(time.Millisecond))
		if r.cfg.scenario == "idle" && r.sessions > 0 {
			fmt.Fprintf(w, "server rss_per_session=%.1fKiB\n", r.rssPerSession())
		}
		if r.ops > 0 {
			fmt.Fprintf(w, "server cpu_per_op=%s\n", (r.cpu1-r.cpu0)/time.Duration(r.ops))
		}
	}
}

// rssPerSession is the growth of the server's RSS per session held, for
// the idle scenario (the others read RSS after their logins).
func (r *report) rssPerSession() float64 {
	if r.sessions == 0 || r.cfg.scenario != "idle" {
		return 0
	}
	return float64(r.rss1-r.rss0) / 1024 / float64(r.sessions)
}

// printJSON writes the report as one JSON object (durations in ms or µs as
// the field names say), for scripts such as bench/compare.sh.
func (r *report) printJSON(w io.Writer) {
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	out := map[string]any{
		"scenario": r.cfg.scenario, "users": r.cfg.users, "sessions": r.sessions,
		"duration_s": r.elapsed.Seconds(), "ops": r.ops, "unit": r.unit(),
		"rate": float64(r.ops) / r.elapsed.Seconds(), "errors": r.errors, "first_error": r.firstErr,
		"logins": r.logins, "sent": r.sent, "offered_rate": r.offered(), "settle_s": r.settle.Seconds(),
	}
	if r.sent > 0 {
		out["rate_sent"] = float64(r.sent) / r.elapsed.Seconds()
		if r.cfg.scenario == "muc" {
			out["rooms"], out["fanout"], out["join_retries"] = r.rooms, float64(r.ops)/float64(r.sent), r.joinRetries
		}
	}
	if l := r.latencies; len(l) > 0 {
		out["p50_ms"], out["p90_ms"], out["p99_ms"], out["max_ms"] = ms(percentile(l, .5)), ms(percentile(l, .9)), ms(percentile(l, .99)), ms(l[len(l)-1])
	}
	if len(r.cfg.pids) > 0 {
		cpu := r.cpu1 - r.cpu0
		out["rss_before_kib"], out["rss_after_kib"], out["cpu_s"] = r.rss0>>10, r.rss1>>10, cpu.Seconds()
		if r.cfg.scenario == "idle" && r.sessions > 0 {
			out["rss_per_session_kib"] = r.rssPerSession()
		}
		if r.ops > 0 {
			out["cpu_per_op_us"] = float64(cpu) / float64(time.Microsecond) / float64(r.ops)
		}
	}
	enc := json.NewEncoder(w)
	enc.Encode(out)
}

// offered is the load asked for, per second (0: as fast as possible):
// messages sent for chat and muc, logins for login and presence.
func (r *report) offered() float64 {
	c := r.cfg
	if c.rate <= 0 {
		if c.scenario == "presence" {
			return float64(c.users) // one login per user per second
		}
		return 0
	}
	switch c.scenario {
	case "chat", "login", "presence":
		return float64(c.users) * c.rate
	case "muc":
		senders := c.users
		if c.senders > 0 {
			per := c.roomSize
			if c.roomCount() == 1 {
				per = c.users
			}
			senders = c.roomCount() * min(c.senders, per)
		}
		return float64(senders) * c.rate
	}
	return 0
}

// procStatsAll sums procStats over the server's processes (ejabberd's
// Erlang VM and its helpers, for instance). The first must be readable;
// one of the others that has gone is left out.
func procStatsAll(pids []int) (rss int64, cpu time.Duration, err error) {
	for i, pid := range pids {
		r, c, err := procStats(pid)
		if err != nil {
			if i == 0 {
				return 0, 0, err
			}
			continue
		}
		rss += r
		cpu += c
	}
	return rss, cpu, nil
}

// parsePIDs parses -pid: a comma-separated list of process IDs.
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" || f == "0" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-pid: %q is not a process ID", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// procStats reads RSS (bytes) and user+system CPU time of a process.
func procStats(pid int) (rss int64, cpu time.Duration, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return rss, 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return rss, time.Duration(ut+st) * time.Second / hz, nil
}
