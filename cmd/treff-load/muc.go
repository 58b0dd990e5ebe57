package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The muc scenario: the users are split into rooms of -room-size
// occupants (one room, -room, if 0); in each room the first -senders
// occupants (0: all) send groupchat messages, at -rate each or one in
// flight, and every occupant counts every copy it receives, its own
// reflection included: one message in, N copies out, and the server's
// CPU per op is its cost per delivered copy.
//
// Each occupant has one reader from before its join to the end of the
// run, so that it keeps reading the presences of the occupants who join
// after it: a client that stopped reading while 500 others join would
// fill its socket buffers, and a server may drop a client that does not
// read.

// roomCount is how many rooms the users are split into.
func (c *config) roomCount() int {
	if c.roomSize <= 0 || c.roomSize >= c.users {
		return 1
	}
	return (c.users + c.roomSize - 1) / c.roomSize
}

// roomOf is the room of user i.
func (c *config) roomOf(i int) int {
	if c.roomCount() == 1 {
		return 0
	}
	return i / c.roomSize
}

// roomJID names room k: -room itself for a single room, else its
// localpart with k appended (bench@conference.localhost: bench0@…,
// bench1@…).
func (c *config) roomJID(k int) string {
	if c.roomCount() == 1 {
		return c.room
	}
	local, domain, _ := strings.Cut(c.room, "@")
	return local + strconv.Itoa(k) + "@" + domain
}

// occupant is one client in a room.
type occupant struct {
	cl         *client
	room, nick string
	in         bool          // joined
	joined     chan error    // the join's outcome, once
	echo       chan struct{} // the room reflected one of its messages
}

// mucRun is the muc scenario between the joins and the end.
type mucRun struct {
	c         config
	occ       []*occupant
	rooms     [][]*occupant
	start     atomic.Int64 // UnixNano of the measured part's start; 0 before
	delivered atomic.Int64
	retries   atomic.Int64 // joins retried after a wait error
	lat       latencies
	readers   sync.WaitGroup
}

// joinError is a room's refusal of a join.
type joinError struct{ room, raw string }

func (e *joinError) Error() string { return "join " + e.room + ": " + e.raw }

// wait reports an error of type wait (RFC 6120 section 8.3.2: retry
// after waiting), such as a room busy with a burst of joins.
func (e *joinError) wait() bool {
	return strings.Contains(e.raw, "type='wait'") || strings.Contains(e.raw, `type="wait"`)
}

// joinAttempts bounds the retries of a join refused with a wait error.
const joinAttempts = 20

func hasStatus(raw, code string) bool {
	return strings.Contains(raw, "code='"+code+"'") || strings.Contains(raw, `code="`+code+`"`)
}

// read is an occupant's reader: it reports the join (configuring a room
// it created as an instant room, XEP-0045 section 10.1.2) and, once the
// measured part has started, counts the groupchat messages it receives.
func (m *mucRun) read(o *occupant) {
	defer m.readers.Done()
	var local []time.Duration
	done, configuring := false, false
	signal := func(err error) { // one outcome per join attempt
		if err == nil {
			done = true
		}
		select {
		case o.joined <- err:
		default:
		}
	}
	for {
		el, err := o.cl.sc.Next()
		if err != nil {
			signal(fmt.Errorf("join %s: %w", o.room, err))
			break
		}
		if o.cl.acks(el) {
			continue
		}
		from, _ := el.Attr("from")
		typ, _ := el.Attr("type")
		switch el.Local() {
		case "presence":
			if done || from != o.nick {
				continue
			}
			if typ == "error" {
				signal(&joinError{room: o.room, raw: el.Raw})
				continue
			}
			if !hasStatus(el.Raw, "110") || configuring {
				continue
			}
			if hasStatus(el.Raw, "201") { // a new room: unlock it with the default configuration
				configuring = true
				if err := o.cl.send("<iq type='set' id='instant' to='" + o.room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"); err != nil {
					signal(err)
				}
				continue
			}
			signal(nil)
		case "iq":
			if id, _ := el.Attr("id"); id == "instant" && !done {
				if typ != "result" {
					signal(fmt.Errorf("configure %s: %s", o.room, el.Raw))
				} else {
					signal(nil)
				}
			}
		case "message":
			if typ != "groupchat" {
				continue
			}
			if st := m.start.Load(); st != 0 {
				if t, ok := stamp(el); ok && t.UnixNano() >= st {
					local = append(local, time.Since(t))
					m.delivered.Add(1)
				}
			}
			if from == o.nick {
				select {
				case o.echo <- struct{}{}:
				default:
				}
			}
		}
	}
	m.lat.add(local)
}

// joinRooms starts every client's reader and makes it join its room
// with its localpart as nickname: the first occupant of each room alone
// (it creates the room), then the others, c.concurrency at a time.
// Clients that cannot join are counted as errors, closed and left out.
func joinRooms(c config, clients []*client, e *errs) (*mucRun, error) {
	m := &mucRun{c: c, rooms: make([][]*occupant, c.roomCount())}
	for i, cl := range clients {
		if cl == nil {
			continue
		}
		k := c.roomOf(i)
		room := c.roomJID(k)
		o := &occupant{cl: cl, room: room, nick: room + "/" + cl.jid[:strings.IndexByte(cl.jid, '@')],
			joined: make(chan error, 1), echo: make(chan struct{}, 1)}
		m.occ = append(m.occ, o)
		m.rooms[k] = append(m.rooms[k], o)
		m.readers.Add(1)
		go m.read(o)
	}
	// A join refused with a wait error (a room busy with a burst of
	// joins) is retried after a growing pause, as a client would.
	// A join waits -timeout and 20 ms per occupant of its room: every
	// join is broadcast to all (Prosody 0.12 takes seconds for a join
	// into a room of 500 while others join too).
	join := func(o *occupant) error {
		size := c.users
		if c.roomCount() > 1 {
			size = c.roomSize
		}
		wait := c.timeout + time.Duration(size)*20*time.Millisecond
		for attempt := 1; ; attempt++ {
			if err := o.cl.send("<presence to='" + o.nick + "'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"); err != nil {
				return err
			}
			select {
			case err := <-o.joined:
				var je *joinError
				if err == nil || !errors.As(err, &je) || !je.wait() || attempt == joinAttempts {
					return err
				}
				m.retries.Add(1)
				time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			case <-time.After(wait):
				return fmt.Errorf("join %s: no self-presence within %s", o.room, wait)
			}
		}
	}
	for _, occ := range m.rooms {
		if len(occ) == 0 {
			continue
		}
		if err := join(occ[0]); err != nil {
			return nil, err
		}
		occ[0].in = true
		c.forEach(len(occ)-1, func(j int) {
			o := occ[j+1]
			if err := join(o); err != nil {
				e.note(err)
				o.cl.close()
				return
			}
			o.in = true
		})
	}
	return m, nil
}

// senders are the occupants that send: the first c.senders joined
// occupants of each room (all with 0).
func (m *mucRun) senders() []*occupant {
	var out []*occupant
	for _, occ := range m.rooms {
		n := 0
		for _, o := range occ {
			if o.in && (m.c.senders <= 0 || n < m.c.senders) {
				out = append(out, o)
				n++
			}
		}
	}
	return out
}

// measure runs the senders until the deadline; the readers count the
// copies that arrive until half a second after it. It returns the
// latencies; ops are the copies delivered, sent the messages sent.
func (m *mucRun) measure(deadline time.Time, ops, sent *int64, e *errs) []time.Duration {
	start := time.Now()
	m.start.Store(start.UnixNano())
	for _, o := range m.occ {
		o.cl.conn.SetReadDeadline(deadline.Add(500 * time.Millisecond))
	}
	senders := m.senders()
	var wg sync.WaitGroup
	for i, o := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pace *pacer
			if m.c.rate > 0 {
				pace = newPacer(start, i, len(senders), periodOf(m.c.rate))
			}
			for time.Now().Before(deadline) {
				if pace != nil && !pace.wait(deadline) {
					return
				}
				if err := o.cl.send("<message to='" + o.room + "' type='groupchat'><body>" + stampNow() + "</body></message>"); err != nil {
					e.note(err)
					return
				}
				atomic.AddInt64(sent, 1)
				if pace != nil {
					continue
				}
				select { // one in flight: until the room reflects it
				case <-o.echo:
				case <-time.After(5 * time.Second):
					e.note(fmt.Errorf("%s: message not reflected within 5s", o.room))
				}
			}
		}()
	}
	wg.Wait()
	m.readers.Wait()
	*ops = m.delivered.Load()
	return m.lat.l
}
