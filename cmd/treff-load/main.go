// Command treff-load is a load generator for XMPP servers, written against
// the wire protocol so that it drives any server (Treff, Prosody, ejabberd).
//
// It connects N clients over STARTTLS, authenticates them (PLAIN or SCRAM),
// binds, sends initial presence, runs a scenario for a bounded time and
// reports throughput, latency percentiles, errors and, given the server's
// PID, the server process's RSS and CPU time from /proc.
//
// Scenarios:
//
//	login  connect + TLS + SASL + bind, repeatedly; reports the login rate
//	chat   pairs of clients send each other messages (at -rate per client,
//	       or as fast as possible); latency from a timestamp in the body
//	idle   hold N sessions; reports the server's memory per session
//
// Accounts must exist: create them first (treff-load -print-users prints
// the JIDs and password it will use, one per line, for an admin command).
// It only ever connects to -addr; use it on servers you run.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/sasl"

	"github.com/treff-im/treff/internal/xmlscan"
)

type config struct {
	addr, domain, prefix, password, mech, scenario string
	users                                          int
	duration                                       time.Duration
	rate                                           float64
	pid                                            int
	insecure                                       bool
	timeout                                        time.Duration
}

func main() {
	var c config
	var printUsers bool
	flag.StringVar(&c.addr, "addr", "127.0.0.1:5222", "server `address` (STARTTLS port)")
	flag.StringVar(&c.domain, "domain", "localhost", "XMPP `domain` of the accounts")
	flag.StringVar(&c.prefix, "prefix", "load", "account name `prefix`: accounts are PREFIX0..PREFIX(N-1)")
	flag.StringVar(&c.password, "password", "loadtest-password", "`password` of every account")
	flag.StringVar(&c.mech, "mech", "PLAIN", "SASL `mechanism`: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256")
	flag.StringVar(&c.scenario, "scenario", "chat", "`scenario`: login, chat or idle")
	flag.IntVar(&c.users, "users", 10, "number of clients (chat uses pairs)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long the scenario runs")
	flag.Float64Var(&c.rate, "rate", 0, "chat: messages per second per client (0: as fast as possible, one in flight)")
	flag.IntVar(&c.pid, "pid", 0, "server process `PID` for RSS and CPU readings from /proc (0: none)")
	flag.BoolVar(&c.insecure, "insecure", true, "accept any server certificate (test servers with self-signed certificates)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout for each login")
	flag.BoolVar(&printUsers, "print-users", false, "print the JIDs the run uses, one per line, and exit")
	flag.Parse()
	if printUsers {
		for i := 0; i < c.users; i++ {
			fmt.Printf("%s%d@%s\n", c.prefix, i, c.domain)
		}
		return
	}
	if c.users < 1 || c.duration <= 0 || c.duration > 24*time.Hour {
		fmt.Fprintln(os.Stderr, "treff-load: -users must be >= 1 and -duration between 0 and 24h")
		os.Exit(2)
	}
	rep, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "treff-load:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout)
}

// client is one logged-in XMPP client.
type client struct {
	conn net.Conn
	sc   *xmlscan.Scanner
	jid  string
	wmu  sync.Mutex
	w    *bufio.Writer
}

func (cl *client) send(s string) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	cl.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := cl.w.WriteString(s); err != nil {
		return err
	}
	return cl.w.Flush()
}

// expect reads elements until one named name arrives.
func (cl *client) expect(names ...string) (*xmlscan.Element, error) {
	for i := 0; i < 100; i++ {
		el, err := cl.sc.Next()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if el.Local() == n {
				return el, nil
			}
		}
	}
	return nil, errors.New("too many unexpected elements")
}

func header(domain string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + domain + "' version='1.0'>"
}

func (cl *client) open(domain string) error {
	if err := cl.send(header(domain)); err != nil {
		return err
	}
	if _, err := cl.sc.Header(); err != nil {
		return err
	}
	_, err := cl.expect("features")
	return err
}

// login connects, runs STARTTLS, SASL and bind.
func login(c config, user string) (*client, error) {
	d := net.Dialer{Timeout: c.timeout}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(c.timeout))
	cl := &client{conn: conn, w: bufio.NewWriter(conn), sc: xmlscan.NewScanner(conn, 1<<20)}
	fail := func(err error) (*client, error) { conn.Close(); return nil, err }
	if err := cl.open(c.domain); err != nil {
		return fail(fmt.Errorf("stream: %w", err))
	}
	if err := cl.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return fail(err)
	}
	if _, err := cl.expect("proceed"); err != nil {
		return fail(fmt.Errorf("starttls: %w", err))
	}
	tc := tls.Client(conn, &tls.Config{ServerName: c.domain, InsecureSkipVerify: c.insecure, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	cl.conn, cl.w = tc, bufio.NewWriter(tc)
	cl.sc.Reset(tc)
	if err := cl.open(c.domain); err != nil {
		return fail(err)
	}
	if err := cl.auth(c, user); err != nil {
		return fail(fmt.Errorf("sasl: %w", err))
	}
	cl.sc.Restart()
	if err := cl.open(c.domain); err != nil {
		return fail(err)
	}
	if err := cl.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>"); err != nil {
		return fail(err)
	}
	el, err := cl.expect("iq")
	if err != nil || !strings.Contains(el.Raw, "<jid>") {
		return fail(fmt.Errorf("bind: %v", err))
	}
	j := el.Raw[strings.Index(el.Raw, "<jid>")+5:]
	cl.jid = j[:strings.Index(j, "<")]
	if err := cl.send("<presence/>"); err != nil {
		return fail(err)
	}
	tc.SetDeadline(time.Time{})
	return cl, nil
}

func (cl *client) auth(c config, user string) error {
	var mech sasl.Mechanism
	switch c.mech {
	case "PLAIN":
		mech = sasl.Plain
	case "SCRAM-SHA-1":
		mech = sasl.ScramSha1
	case "SCRAM-SHA-256":
		mech = sasl.ScramSha256
	default:
		return fmt.Errorf("unknown mechanism %s", c.mech)
	}
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(c.password), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		return err
	}
	if err := cl.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + c.mech + "'>" + base64.StdEncoding.EncodeToString(resp) + "</auth>"); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		el, err := cl.expect("challenge", "success", "failure")
		if err != nil {
			return err
		}
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Inner()))
		switch el.Local() {
		case "failure":
			return errors.New("authentication failed")
		case "success":
			if len(data) > 0 {
				if _, _, err := neg.Step(data); err != nil {
					return fmt.Errorf("server signature: %w", err)
				}
			}
			return nil
		}
		_, resp, err := neg.Step(data)
		if err != nil {
			return err
		}
		if err := cl.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(resp) + "</response>"); err != nil {
			return err
		}
	}
	return errors.New("too many SASL steps")
}

// report is the outcome of a run.
type report struct {
	cfg        config
	ops        int64
	errors     int64
	elapsed    time.Duration
	latencies  []time.Duration
	sessions   int
	rss0, rss1 int64 // bytes
	cpu0, cpu1 time.Duration
	firstErr   string
}

func percentile(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

func (r *report) print(w io.Writer) {
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	fmt.Fprintf(w, "scenario=%s users=%d duration=%s mech=%s\n", r.cfg.scenario, r.cfg.users, r.elapsed.Round(time.Millisecond), r.cfg.mech)
	fmt.Fprintf(w, "ops=%d rate=%.1f/s errors=%d\n", r.ops, float64(r.ops)/r.elapsed.Seconds(), r.errors)
	if r.firstErr != "" {
		fmt.Fprintf(w, "first_error=%q\n", r.firstErr)
	}
	if len(r.latencies) > 0 {
		l := r.latencies
		fmt.Fprintf(w, "latency p50=%s p90=%s p99=%s max=%s\n", percentile(l, .5), percentile(l, .9), percentile(l, .99), l[len(l)-1])
	}
	if r.cfg.pid > 0 {
		fmt.Fprintf(w, "server rss_before=%dKiB rss_after=%dKiB cpu=%s\n", r.rss0>>10, r.rss1>>10, (r.cpu1 - r.cpu0).Round(time.Millisecond))
		if r.sessions > 0 {
			fmt.Fprintf(w, "server rss_per_session=%.1fKiB\n", float64(r.rss1-r.rss0)/1024/float64(r.sessions))
		}
		if r.ops > 0 {
			fmt.Fprintf(w, "server cpu_per_op=%s\n", (r.cpu1-r.cpu0)/time.Duration(r.ops))
		}
	}
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

func run(ctx context.Context, c config) (*report, error) {
	r := &report{cfg: c}
	var firstErr atomic.Value
	noteErr := func(err error) {
		atomic.AddInt64(&r.errors, 1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	user := func(i int) string { return c.prefix + strconv.Itoa(i) }
	if c.pid > 0 {
		var err error
		if r.rss0, r.cpu0, err = procStats(c.pid); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	deadline := start.Add(c.duration)
	switch c.scenario {
	case "login":
		var wg sync.WaitGroup
		for i := 0; i < c.users; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for time.Now().Before(deadline) {
					cl, err := login(c, user(i))
					if err != nil {
						noteErr(err)
						continue
					}
					atomic.AddInt64(&r.ops, 1)
					cl.send("</stream:stream>")
					cl.conn.Close()
				}
			}(i)
		}
		wg.Wait()
	case "idle", "chat":
		clients := make([]*client, c.users)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range clients {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				cl, err := login(c, user(i))
				if err != nil {
					noteErr(err)
					return
				}
				clients[i] = cl
			}(i)
		}
		wg.Wait()
		defer func() {
			for _, cl := range clients {
				if cl != nil {
					cl.send("</stream:stream>")
					cl.conn.Close()
				}
			}
		}()
		for _, cl := range clients {
			if cl != nil {
				r.sessions++
			}
		}
		if c.scenario == "idle" {
			time.Sleep(time.Until(deadline))
			r.ops = int64(r.sessions)
			break
		}
		r.latencies = chat(c, clients, deadline, &r.ops, noteErr)
	default:
		return nil, fmt.Errorf("unknown scenario %q", c.scenario)
	}
	r.elapsed = time.Since(start)
	if c.scenario == "chat" && r.elapsed > c.duration {
		r.elapsed = c.duration // the tail only drains messages in flight
	}
	if c.pid > 0 {
		r.rss1, r.cpu1, _ = procStats(c.pid)
	}
	if v := firstErr.Load(); v != nil {
		r.firstErr = v.(string)
	}
	return r, nil
}

// chat makes pairs (0,1), (2,3), ... send messages to each other until the
// deadline and returns the latencies measured by the receivers.
func chat(c config, clients []*client, deadline time.Time, ops *int64, noteErr func(error)) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for i := 0; i+1 < len(clients); i += 2 {
		a, b := clients[i], clients[i+1]
		if a == nil || b == nil {
			continue
		}
		for _, p := range [][2]*client{{a, b}, {b, a}} {
			from, to := p[0], p[1]
			got := make(chan struct{}, 1)
			// receiver
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]time.Duration, 0, 1024)
				// Messages in flight at the deadline get a moment to arrive.
				to.conn.SetReadDeadline(deadline.Add(500 * time.Millisecond))
				for {
					el, err := to.sc.Next()
					if err != nil {
						break
					}
					if el.Local() != "message" {
						continue
					}
					in := el.Inner()
					i := strings.Index(in, "<body>t=")
					if i < 0 {
						continue
					}
					ns, err := strconv.ParseInt(in[i+8:i+8+strings.IndexByte(in[i+8:], '<')], 10, 64)
					if err == nil {
						local = append(local, time.Since(time.Unix(0, ns)))
						atomic.AddInt64(ops, 1)
					}
					select {
					case got <- struct{}{}:
					default:
					}
					if time.Now().After(deadline) {
						break
					}
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			// sender
			wg.Add(1)
			go func() {
				defer wg.Done()
				var tick <-chan time.Time
				if c.rate > 0 {
					t := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
					defer t.Stop()
					tick = t.C
				}
				target := to.jid
				for time.Now().Before(deadline) {
					msg := "<message to='" + target + "' type='chat'><body>t=" + strconv.FormatInt(time.Now().UnixNano(), 10) + "</body></message>"
					if err := from.send(msg); err != nil {
						noteErr(err)
						return
					}
					if tick != nil {
						<-tick
						continue
					}
					select { // one in flight
					case <-got:
					case <-time.After(5 * time.Second):
						noteErr(errors.New("message not delivered within 5s"))
					}
				}
			}()
		}
	}
	wg.Wait()
	return lat
}
