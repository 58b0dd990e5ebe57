package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treff-im/treff/internal/xmlscan"
)

// stamp returns the send time carried as "t=UNIXNANOS" text in a body or
// status child of el.
func stamp(el *xmlscan.Element) (time.Time, bool) {
	i := strings.Index(el.Raw, ">t=")
	if i < 0 {
		return time.Time{}, false
	}
	rest := el.Raw[i+3:]
	j := strings.IndexByte(rest, '<')
	if j < 0 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(rest[:j], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func stampNow() string { return "t=" + strconv.FormatInt(time.Now().UnixNano(), 10) }

// latencies collects latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	l  []time.Duration
}

func (l *latencies) add(local []time.Duration) {
	l.mu.Lock()
	l.l = append(l.l, local...)
	l.mu.Unlock()
}

func bare(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// flow runs a sender and a receiver per client until the deadline; with
// -rate, each sender keeps its own fixed schedule (pacer), shifted by its
// share of the period. msg
// builds a sender's next message; count reports whether a received stanza
// is a delivered message to measure; release names the client whose
// sender may send its next message when it has only one in flight (nil:
// none).
func flow(c config, clients []*client, deadline time.Time, ops, sent *int64, e *errs,
	msg func(from *client) string, count func(cl *client, el *xmlscan.Element) bool,
	release func(cl *client, el *xmlscan.Element) *client) []time.Duration {
	var lat latencies
	var wg sync.WaitGroup
	gotc := make(map[*client]chan struct{}, len(clients))
	for _, cl := range clients {
		gotc[cl] = make(chan struct{}, 1)
	}
	start := time.Now()
	for i, cl := range clients {
		got := gotc[cl]
		wg.Add(2)
		go func() { // receiver
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			// Messages in flight at the deadline get a moment to arrive.
			cl.conn.SetReadDeadline(deadline.Add(500 * time.Millisecond))
			for {
				el, err := cl.sc.Next()
				if err != nil {
					break
				}
				if cl.acks(el) {
					continue
				}
				if count(cl, el) {
					if t, ok := stamp(el); ok {
						local = append(local, time.Since(t))
						atomic.AddInt64(ops, 1)
					}
				}
				if to := release(cl, el); to != nil {
					select {
					case gotc[to] <- struct{}{}:
					default:
					}
				}
			}
			lat.add(local)
		}()
		go func() { // sender
			defer wg.Done()
			var pace *pacer
			if c.rate > 0 {
				pace = newPacer(start, i, len(clients), periodOf(c.rate))
			}
			for time.Now().Before(deadline) {
				if pace != nil && !pace.wait(deadline) {
					return
				}
				if err := cl.send(msg(cl)); err != nil {
					e.note(err)
					return
				}
				atomic.AddInt64(sent, 1)
				if pace != nil {
					continue
				}
				select { // one in flight
				case <-got:
				case <-time.After(5 * time.Second):
					e.note(errors.New("message not delivered within 5s"))
				}
			}
		}()
	}
	wg.Wait()
	return lat.l
}

// chat makes pairs (0,1), (2,3), ... send messages to each other until the
// deadline and returns the latencies measured by the receivers.
func chat(c config, clients []*client, deadline time.Time, ops, sent *int64, e *errs) []time.Duration {
	peer := make(map[*client]*client, len(clients))
	var active []*client
	for i := 0; i+1 < len(clients); i += 2 {
		a, b := clients[i], clients[i+1]
		if a == nil || b == nil {
			continue
		}
		peer[a], peer[b] = b, a
		active = append(active, a, b)
	}
	return flow(c, active, deadline, ops, sent, e,
		func(from *client) string {
			return "<message to='" + peer[from].jid + "' type='chat'><body>" + stampNow() + "</body></message>"
		},
		func(_ *client, el *xmlscan.Element) bool { return el.Local() == "message" },
		func(cl *client, el *xmlscan.Element) *client {
			if el.Local() == "message" {
				return peer[cl]
			}
			return nil
		})
}

// contactsOf returns the contacts of user i: its c.contacts/2 neighbours on
// either side of a ring of all users.
func contactsOf(c config, i int) []string {
	var out []string
	for d := 1; d <= c.contacts/2; d++ {
		out = append(out, c.user((i+d)%c.users)+"@"+c.domain, c.user((i-d+c.users)%c.users)+"@"+c.domain)
	}
	return out
}

// setupStall is how long the presence setup of n subscriptions waits for
// the next approval: 30 s and 40 ms for each (the first approval may come
// only after the server has handled every request; Prosody 0.12 took
// 170 s for 5,000).
func setupStall(n int) time.Duration { return 30*time.Second + time.Duration(n)*40*time.Millisecond }

// setupLimit bounds the presence setup of n subscriptions: a minute and
// 80 ms for each.
func setupLimit(n int) time.Duration { return time.Minute + time.Duration(n)*80*time.Millisecond }

// subscribeAll gives every user a mutual subscription ("both") with each of
// its contacts, through the protocol, skipping those it has already. Every
// client approves the requests it gets.
func subscribeAll(c config) error {
	var e errs
	clients := make([]*client, c.users)
	need := make([]map[string]bool, c.users)
	c.forEach(c.users, func(i int) {
		cl, err := login(c, c.user(i), "<presence/>")
		if err != nil {
			e.note(err)
			return
		}
		clients[i] = cl
		cl.conn.SetReadDeadline(time.Now().Add(c.timeout))
		defer cl.conn.SetReadDeadline(time.Time{})
		if err := cl.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>"); err != nil {
			e.note(err)
			return
		}
		need[i] = make(map[string]bool)
		for _, j := range contactsOf(c, i) {
			need[i][j] = true
		}
		for k := 0; k < 10_000; k++ {
			el, err := cl.sc.Next()
			if err != nil {
				e.note(fmt.Errorf("roster: %w", err))
				return
			}
			if id, _ := el.Attr("id"); el.Local() != "iq" || id != "roster" {
				continue
			}
			for _, item := range strings.Split(el.Raw, "<item ")[1:] {
				if !strings.Contains(item, "subscription='both'") && !strings.Contains(item, `subscription="both"`) {
					continue
				}
				for j := range need[i] {
					if strings.Contains(item, "jid='"+j+"'") || strings.Contains(item, `jid="`+j+`"`) {
						delete(need[i], j)
					}
				}
			}
			return
		}
	})
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.close()
			}
		}
	}()
	if n := e.n.Load(); n > 0 {
		return fmt.Errorf("presence setup: %d logins failed, first: %s", n, e.first.Load())
	}
	// Servers differ a lot in the cost of a subscription (Prosody 0.12
	// takes ~30 ms for each, rewriting the roster file, and handles the
	// burst of requests before the first approval): the setup goes on as
	// long as approvals keep arriving, and ends after a stall without one
	// or at the hard limit.
	n := c.users * c.contacts
	limit, stall := time.Now().Add(setupLimit(n)), setupStall(n)
	targets := make([][]string, len(clients))
	for i := range clients {
		for j := range need[i] {
			targets[i] = append(targets[i], j)
		}
	}
	var wg sync.WaitGroup
	var pending atomic.Int64
	for i, cl := range clients {
		pending.Add(int64(len(targets[i])))
		wg.Add(1)
		go func() { // approve every request; count the approvals of ours
			defer wg.Done()
			cl.conn.SetReadDeadline(limit)
			for pending.Load() > 0 {
				el, err := cl.sc.Next()
				if err != nil {
					return
				}
				if el.Local() != "presence" {
					continue
				}
				from, _ := el.Attr("from")
				switch t, _ := el.Attr("type"); t {
				case "subscribe":
					cl.send("<presence to='" + bare(from) + "' type='subscribed'/>")
				case "subscribed":
					if need[i][bare(from)] {
						delete(need[i], bare(from))
						pending.Add(-1)
					}
				}
			}
		}()
	}
	for i, cl := range clients {
		for _, j := range targets[i] {
			cl.send("<presence to='" + j + "' type='subscribe'/>")
		}
	}
	// Readers that are done stop when the last approval arrives; wake them.
	go func() {
		last, progress := pending.Load(), time.Now()
		for pending.Load() > 0 && time.Now().Before(limit) && time.Since(progress) < stall {
			time.Sleep(10 * time.Millisecond)
			if n := pending.Load(); n < last {
				last, progress = n, time.Now()
			}
		}
		for _, cl := range clients {
			cl.conn.SetReadDeadline(time.Now())
		}
	}()
	wg.Wait()
	if n := pending.Load(); n > 0 {
		return fmt.Errorf("presence setup: %d of %d subscriptions not approved (none for %s, or over %s)", n, c.users*c.contacts, stall, setupLimit(c.users*c.contacts))
	}
	return nil
}

// presence makes every user log in with a time-stamped presence, stay
// online for its cycle (1/-rate, default one second) or, with -online X
// below 1, for that share of it and offline for the rest, and log out,
// until the deadline; with -online the users' cycles are spread evenly
// over the period, so that about X of them are online at a time. The contacts that receive the broadcast measure
// its latency; the presences of contacts received as answers to the
// login's probes carry older stamps and are not counted, nor is a second
// copy of a presence already counted.
func presence(c config, deadline time.Time, ops, logins *int64, e *errs) []time.Duration {
	period := time.Second
	if c.rate > 0 {
		period = periodOf(c.rate)
	}
	spread := c.online > 0 && c.online < 1
	online := period
	if spread {
		online = time.Duration(float64(period) * c.online)
	}
	begin := time.Now()
	var lat latencies
	var wg sync.WaitGroup
	for i := 0; i < c.users; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := c.user(i) + "@" + c.domain
			var local []time.Duration
			start := begin
			if spread { // this user's cycle starts at its share of the period
				start = begin.Add(phase(i, c.users, period))
				time.Sleep(time.Until(start))
			}
			for start.Before(deadline) {
				next := start.Add(period)
				cl, err := login(c, c.user(i), "")
				if err != nil {
					e.note(err)
					time.Sleep(time.Until(next))
					start = next
					continue
				}
				atomic.AddInt64(logins, 1)
				since := time.Now()
				if err := cl.send("<presence><status>" + stampNow() + "</status></presence>"); err != nil {
					e.note(err)
				}
				end := start.Add(online)
				if end.After(deadline) {
					end = deadline.Add(500 * time.Millisecond)
				}
				cl.conn.SetReadDeadline(end)
				// A contact that logged in after us sends its presence
				// twice: its broadcast and its answer to our probe. Each
				// presence it sent counts once.
				seen := make(map[string]time.Time)
				for {
					el, err := cl.sc.Next()
					if err != nil {
						break
					}
					from, _ := el.Attr("from")
					if el.Local() != "presence" || bare(from) == user {
						continue
					}
					if _, typed := el.Attr("type"); typed {
						continue
					}
					if t, ok := stamp(el); ok && t.After(since) && !seen[from].Equal(t) {
						seen[from] = t
						local = append(local, time.Since(t))
						atomic.AddInt64(ops, 1)
					}
				}
				cl.close()
				if !spread {
					start = time.Now()
					continue
				}
				// Offline for the rest of the cycle; a cycle that ran
				// late starts the next one at once.
				if w := time.Until(next); w > 0 {
					if next.After(deadline) {
						break
					}
					time.Sleep(w)
					start = next
				} else {
					start = time.Now()
				}
			}
			lat.add(local)
		}()
	}
	wg.Wait()
	return lat.l
}

// presenceRounds is the presence scenario in c.rounds lockstep rounds, for
// a result that does not depend on the machine's speed: in each round
// every user logs in with a time-stamped presence and stays online until
// it has a presence of this round from each of its contacts (a broadcast,
// or the answer to its probe for a contact that came first); when all
// have them, all log out. Of each pair of contacts exactly one logged in
// after the other and measures the latency of its broadcast, so a round
// counts users*contacts/2 presences. A contact missing after c.timeout is
// an error.
func presenceRounds(c config, ops, logins *int64, e *errs) []time.Duration {
	var lat latencies
	for round := 0; round < c.rounds; round++ {
		roundStart := time.Now()
		clients := make([]*client, c.users)
		var wg sync.WaitGroup
		for i := 0; i < c.users; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := login(c, c.user(i), "")
				if err != nil {
					e.note(err)
					return
				}
				clients[i] = cl
				atomic.AddInt64(logins, 1)
				// The stamp is since itself: of two contacts, exactly
				// one has the later stamp.
				since := time.Now()
				if err := cl.send("<presence><status>t=" + strconv.FormatInt(since.UnixNano(), 10) + "</status></presence>"); err != nil {
					e.note(err)
					return
				}
				missing := make(map[string]bool)
				for _, j := range contactsOf(c, i) {
					missing[j] = true
				}
				cl.conn.SetReadDeadline(time.Now().Add(c.timeout))
				defer cl.conn.SetReadDeadline(time.Time{})
				var local []time.Duration
				for len(missing) > 0 {
					el, err := cl.sc.Next()
					if err != nil {
						e.note(fmt.Errorf("presence round %d: %s lacks %d contacts' presences: %w", round, c.user(i), len(missing), err))
						break
					}
					from, _ := el.Attr("from")
					if _, typed := el.Attr("type"); typed || el.Local() != "presence" || !missing[bare(from)] {
						continue
					}
					t, ok := stamp(el)
					if !ok || !t.After(roundStart) {
						continue
					}
					delete(missing, bare(from))
					if t.After(since) {
						local = append(local, time.Since(t))
						atomic.AddInt64(ops, 1)
					}
				}
				lat.add(local)
			}()
		}
		wg.Wait()
		for _, cl := range clients {
			if cl != nil {
				cl.close()
			}
		}
	}
	return lat.l
}
