package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func (c *config) user(i int) string { return c.prefix + strconv.Itoa(i) }

// addrFor returns the server address user connects to: with several
// (-addr a,b,c), user PREFIX<i> connects to the i-th modulo their number,
// so that the chat pairs (0,1), (2,3), ... span two of them.
func (c *config) addrFor(user string) string {
	addrs := strings.Split(c.addr, ",")
	if len(addrs) == 1 {
		return c.addr
	}
	i, err := strconv.Atoi(strings.TrimPrefix(user, c.prefix))
	if err != nil || i < 0 {
		i = 0
	}
	return strings.TrimSpace(addrs[i%len(addrs)])
}

// errs counts errors and keeps the first one.
type errs struct {
	n     atomic.Int64
	first atomic.Value
}

func (e *errs) note(err error) {
	e.n.Add(1)
	e.first.CompareAndSwap(nil, err.Error())
}

// forEach runs f for 0..n-1 with at most c.concurrency calls at a time.
func (c *config) forEach(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.concurrency)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}(i)
	}
	wg.Wait()
}

// run creates the accounts if asked to, runs the scenario and removes the
// accounts again.
func run(ctx context.Context, c config) (*report, error) {
	if err := createAccounts(c); err != nil {
		return nil, err
	}
	r, err := runScenario(ctx, c)
	if derr := deleteAccounts(c); derr != nil && err == nil {
		err = derr
	}
	return r, err
}

func createAccounts(c config) error {
	switch {
	case c.createCmd != "":
		var in strings.Builder
		for i := 0; i < c.users; i++ {
			fmt.Fprintf(&in, "%s %s\n", c.user(i), c.password)
		}
		return shell(c.createCmd, in.String())
	case c.register:
		var e errs
		c.forEach(c.users, func(i int) {
			if err := register(c, c.user(i)); err != nil {
				e.note(err)
			}
		})
		if n := e.n.Load(); n > 0 {
			return fmt.Errorf("registration failed for %d accounts, first: %s", n, e.first.Load())
		}
	}
	return nil
}

func deleteAccounts(c config) error {
	switch {
	case c.deleteCmd != "":
		var in strings.Builder
		for i := 0; i < c.users; i++ {
			fmt.Fprintf(&in, "%s\n", c.user(i))
		}
		return shell(c.deleteCmd, in.String())
	case c.register:
		var e errs
		c.forEach(c.users, func(i int) {
			cl, err := login(c, c.user(i), "")
			if err == nil {
				err = cl.unregister()
				cl.conn.Close()
			}
			if err != nil {
				e.note(err)
			}
		})
		if n := e.n.Load(); n > 0 {
			return fmt.Errorf("removing %d accounts failed, first: %s", n, e.first.Load())
		}
	}
	return nil
}

func shell(cmd, stdin string) error {
	sh := exec.Command("/bin/sh", "-c", cmd)
	sh.Stdin = strings.NewReader(stdin)
	sh.Stdout, sh.Stderr = os.Stderr, os.Stderr
	if err := sh.Run(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// runScenario sets up (logins, subscriptions, room joins), then measures
// the scenario proper: server CPU and RSS are read around that part only,
// except for idle, whose RSS includes the logins it holds.
func runScenario(ctx context.Context, c config) (*report, error) {
	r := &report{cfg: c}
	var e errs
	mark := func() error {
		if len(c.pids) == 0 {
			return nil
		}
		var err error
		r.rss0, r.cpu0, err = procStatsAll(c.pids)
		return err
	}
	var measure func(deadline time.Time)
	var cleanup func()
	switch c.scenario {
	case "login":
		measure = func(deadline time.Time) {
			if c.resume {
				c.forEach(c.users, func(i int) {
					cl, err := login(c, c.user(i), "")
					if err != nil {
						e.note(err)
						return
					}
					for time.Now().Before(deadline) {
						next, err := reconnect(c, c.user(i), cl)
						if err != nil {
							e.note(err)
							return
						}
						atomic.AddInt64(&r.ops, 1)
						cl = next
					}
					cl.close()
				})
				return
			}
			start := time.Now()
			c.forEach(c.users, func(i int) {
				var pace *pacer
				if c.rate > 0 {
					pace = newPacer(start, i, c.users, periodOf(c.rate))
				}
				for time.Now().Before(deadline) {
					if pace != nil && !pace.wait(deadline) {
						return
					}
					atomic.AddInt64(&r.sent, 1)
					cl, err := login(c, c.user(i), "<presence/>")
					if err != nil {
						e.note(err)
						continue
					}
					atomic.AddInt64(&r.ops, 1)
					cl.close()
				}
			})
		}
	case "idle", "chat", "muc":
		if c.scenario == "idle" {
			if err := mark(); err != nil {
				return nil, err
			}
		}
		clients, err := loginAll(c, &e)
		if err != nil {
			return nil, err
		}
		cleanup = func() {
			for _, cl := range clients {
				if cl != nil {
					cl.close()
				}
			}
		}
		for _, cl := range clients {
			if cl != nil {
				r.sessions++
			}
		}
		switch c.scenario {
		case "idle":
			measure = func(deadline time.Time) {
				time.Sleep(time.Until(deadline))
				r.ops = int64(r.sessions)
			}
		case "chat":
			measure = func(deadline time.Time) { r.latencies = chat(c, clients, deadline, &r.ops, &r.sent, &e) }
		case "muc":
			m, err := joinRooms(c, clients, &e)
			if err != nil {
				cleanup()
				return nil, err
			}
			r.rooms, r.joinRetries = c.roomCount(), m.retries.Load()
			measure = func(deadline time.Time) { r.latencies = m.measure(deadline, &r.ops, &r.sent, &e) }
		}
	case "presence":
		if err := subscribeAll(c); err != nil {
			return nil, err
		}
		measure = func(deadline time.Time) { r.latencies = presence(c, deadline, &r.ops, &r.logins, &e) }
		if c.rounds > 0 {
			measure = func(time.Time) { r.latencies = presenceRounds(c, &r.ops, &r.logins, &e) }
		}
	}
	if cleanup != nil {
		defer cleanup()
	}
	if c.scenario != "idle" {
		// The setup (logins, subscriptions, room joins) may leave the
		// server a backlog (a room of 500 still sending the joins'
		// presences): the measured part starts when it has gone quiet.
		if len(c.pids) > 0 {
			r.settle = settle(c.pids, settleLimit)
		}
		if err := mark(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	measure(start.Add(c.duration))
	r.elapsed = time.Since(start)
	if r.elapsed > c.duration && c.rounds == 0 {
		r.elapsed = c.duration // the tail only drains what was in flight
	}
	if len(c.pids) > 0 {
		r.rss1, r.cpu1, _ = procStatsAll(c.pids)
	}
	r.errors = e.n.Load()
	if v := e.first.Load(); v != nil {
		r.firstErr = v.(string)
	}
	return r, nil
}

// settleLimit bounds the wait for the server to go quiet after the setup.
const settleLimit = 30 * time.Second

// settle waits until the server's processes use less than a tenth of a
// CPU over 200 ms, or until limit; it returns how long it waited.
func settle(pids []int, limit time.Duration) time.Duration {
	start := time.Now()
	const window = 200 * time.Millisecond
	for time.Since(start) < limit {
		_, a, err := procStatsAll(pids)
		if err != nil {
			break
		}
		time.Sleep(window)
		_, b, err := procStatsAll(pids)
		if err != nil || b-a <= window/10 {
			break
		}
	}
	return time.Since(start)
}

// loginAll logs every user in (or, with -relay, connects them to the relay
// in pairs). Failed logins are counted; missing clients are nil.
func loginAll(c config, e *errs) ([]*client, error) {
	clients := make([]*client, c.users)
	if c.relay {
		// The relay pairs connections in the order they arrive.
		for i := range clients {
			cl, err := relayConnect(c, c.user(i))
			if err != nil {
				return nil, fmt.Errorf("relay: %w", err)
			}
			clients[i] = cl
		}
		for _, cl := range clients {
			cl.conn.SetReadDeadline(time.Now().Add(c.timeout))
			if _, err := cl.sc.Header(); err != nil {
				return nil, fmt.Errorf("relay: partner's header: %w", err)
			}
			cl.conn.SetReadDeadline(time.Time{})
		}
		return clients, nil
	}
	c.forEach(c.users, func(i int) {
		cl, err := login(c, c.user(i), "<presence/>")
		if err != nil {
			e.note(err)
			return
		}
		clients[i] = cl
	})
	if e.n.Load() == int64(c.users) {
		return nil, errors.New("no client could log in: " + e.first.Load().(string))
	}
	return clients, nil
}
