package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// A load client for the cluster tests (cluster_crash_test.go): users with
// stream management (XEP-0198, resumable) that send numbered chat
// messages or count the ones they receive, across as many streams as it
// takes. It speaks the protocol itself, byte by byte, so that the counts
// are exact: every stanza the server sends is counted (h), every <r/> is
// answered, and a sender knows from the server's <a h/> exactly which of
// its messages the server took. When a stream ends (a node killed or
// drained), the user connects again (to the <see-other-host/> it was
// given, else to the balancer), asks to resume, and after <failed/> binds
// the same resource anew; a sender then sends again what was not
// acknowledged.

// smElem is one top-level element of a stream.
type smElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e smElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

var (
	smBodyRe  = regexp.MustCompile(`<body[^>]*>([^<]*)</body>`)
	smOtherRe = regexp.MustCompile(`<see-other-host[^>]*>([^<]+)</see-other-host>`)
	smCondRe  = regexp.MustCompile(`<([a-z-]+) xmlns=['"]urn:ietf:params:xml:ns:xmpp-(?:streams|stanzas)['"]`)
)

// smConn is one authenticated stream.
type smConn struct {
	conn net.Conn
	dec  *xml.Decoder
	wmu  sync.Mutex
}

func (c *smConn) send(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write([]byte(s))
	return err
}

// next returns the next top-level element (skipping the stream header);
// the end of the stream is io.EOF or the decoder's error.
func (c *smConn) next() (smElem, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return smElem{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "stream" {
				continue
			}
			var e smElem
			if err := c.dec.DecodeElement(&e, &tok); err != nil {
				return smElem{}, err
			}
			return e, nil
		case xml.EndElement:
			return smElem{}, errors.New("the server closed the stream")
		}
	}
}

// expect returns the next element, an error if it is not named name.
func (c *smConn) expect(name string) (smElem, error) {
	e, err := c.next()
	if err == nil && e.XMLName.Local != name {
		err = fmt.Errorf("got <%s>%s</%s>, want <%s/>", e.XMLName.Local, e.Inner, e.XMLName.Local, name)
	}
	return e, err
}

// smOpen connects to addr, negotiates STARTTLS and authenticates with
// PLAIN: what follows is resuming or binding.
func smOpen(addr string, tlsCfg *tls.Config, user, pass string) (*smConn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smConn{conn: raw, dec: xml.NewDecoder(raw)}
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	fail := func(err error) (*smConn, error) {
		c.conn.Close()
		return nil, err
	}
	if err := c.send(trefftest.Header("localhost")); err != nil {
		return fail(err)
	}
	if _, err := c.expect("features"); err != nil {
		return fail(err)
	}
	if err := c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return fail(err)
	}
	if _, err := c.expect("proceed"); err != nil {
		return fail(err)
	}
	tc := tls.Client(raw, tlsCfg)
	if err := tc.Handshake(); err != nil {
		return fail(err)
	}
	c.conn, c.dec = tc, xml.NewDecoder(tc)
	for _, step := range []struct{ out, in string }{
		{trefftest.Header("localhost"), "features"},
		{trefftest.PlainAuth(user, pass), "success"},
		{trefftest.Header("localhost"), "features"},
	} {
		if err := c.send(step.out); err != nil {
			return fail(err)
		}
		if _, err := c.expect(step.in); err != nil {
			return fail(err)
		}
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// smTLS trusts the nodes' certificate (certFile) for localhost.
func smTLS(t *testing.T, certFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// smEnv is what the users of one test share.
type smEnv struct {
	tls     *tls.Config
	lb      string        // where users reconnect without a <see-other-host/>
	start   chan struct{} // closed: senders start
	stop    chan struct{} // closed: senders send no more numbers (total 0)
	finish  chan struct{} // closed: users close their streams
	changed chan struct{} // a user's counts changed (capacity 1)
	window  int           // a sender's most unacknowledged messages
	every   time.Duration // a sender's pause between messages (0: none)
	end     time.Time     // every wait of a user ends by then

	once      sync.Once
	closeOnce sync.Once
	kill      chan struct{} // closed when the senders' acknowledged messages reach killAt
	killAt    int
	users     []*smUser
}

func newSMEnv(t *testing.T, certFile, lb string, bound time.Duration) *smEnv {
	return &smEnv{tls: smTLS(t, certFile), lb: lb, start: make(chan struct{}), stop: make(chan struct{}),
		finish: make(chan struct{}), changed: make(chan struct{}, 1), kill: make(chan struct{}),
		window: 40, end: time.Now().Add(bound)}
}

func (env *smEnv) notify() {
	select {
	case env.changed <- struct{}{}:
	default:
	}
}

// acked is how many messages the senders have had acknowledged in all.
func (env *smEnv) acked() int {
	n := 0
	for _, u := range env.users {
		if u.sender {
			n += u.ackedCount()
		}
	}
	return n
}

// waitUntil waits (until env.end) for cond, checked at every change, and
// reports whether it came true.
func (env *smEnv) waitUntil(cond func() bool) bool {
	return env.waitFor(time.Until(env.end), cond)
}

// waitFor is waitUntil for at most d.
func (env *smEnv) waitFor(d time.Duration, cond func() bool) bool {
	timer := time.NewTimer(min(d, time.Until(env.end)))
	defer timer.Stop()
	for !cond() {
		select {
		case <-env.changed:
		case <-timer.C:
			return cond()
		}
	}
	return true
}

// close tells the users to close their streams, and waits until they
// have (each ends by env.end).
func (env *smEnv) close() {
	env.closeOnce.Do(func() { close(env.finish) })
	for _, u := range env.users {
		<-u.done
	}
}

// smUser is one account's client across its streams.
type smUser struct {
	name   string // also the account's local part; the resource is "res"
	pass   string
	addr   string   // where it connects first
	sender bool     // a sender of numbered messages (else a receiver)
	to     []string // a sender's receivers: message k goes to to[k%len(to)]
	total  int      // messages to send; 0: until env.stop
	env    *smEnv

	mu        sync.Mutex
	acked     int             // messages the server acknowledged
	sent      int             // the highest number written
	final     int             // total, or what was sent when env.stop closed
	got       map[string]int  // a receiver's bodies, with how often each came
	delayed   int             // of them, with a delay stamp (offline storage)
	available map[string]bool // a sender's receivers seen available
	ready     chan struct{}   // closed when a sender has seen every receiver
	changed   chan struct{}   // its counts changed (capacity 1; the stream waits on it)
	sessions  int             // streams bound (not counting resumptions)
	base      int             // a sender's messages acknowledged before its current stream
	up        bool            // bound now
	prev      string          // the last stream's resumption id
	h         uint32          // stanzas received on the current stream
	resumes   []string        // the answers to resumption: "failed", "resumed"
	errors    []string        // message errors received
	// unacked: for each stream that ended, a receiver's bodies received
	// on it after the last acknowledgement it sent there.
	unacked [][]string
	log     []string
	settled chan struct{} // closed when a sender has every message acknowledged
	done    chan struct{}
	err     error
}

func newSMUser(env *smEnv, name, pass, addr string, sender bool, to []string, total int) *smUser {
	u := &smUser{name: name, pass: pass, addr: addr, sender: sender, to: to, total: total, env: env,
		got: map[string]int{}, available: map[string]bool{}, ready: make(chan struct{}), changed: make(chan struct{}, 1),
		settled: make(chan struct{}), done: make(chan struct{})}
	env.users = append(env.users, u)
	return u
}

// notify tells the user's stream and the test that its counts changed.
func (u *smUser) notify() {
	select {
	case u.changed <- struct{}{}:
	default:
	}
	u.env.notify()
}

func (u *smUser) logf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.log) < 200 {
		u.log = append(u.log, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

func (u *smUser) ackedCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.acked
}

func (u *smUser) isUp() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.up
}

func (u *smUser) sessionCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sessions
}

// limit is the highest number to send: total, or once env.stop is
// closed what was sent by then.
func (u *smUser) limit() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.total > 0 {
		return u.total
	}
	if u.final == 0 {
		select {
		case <-u.env.stop:
			u.final = max(u.sent, 1)
		default:
			return int(^uint(0) >> 1)
		}
	}
	return u.final
}

// run keeps the user connected until its work is done and env.finish is
// closed, or an error (u.err); it closes u.done.
func (u *smUser) run() {
	defer close(u.done)
	defer u.env.notify()
	addr := u.addr
	for attempt := 1; ; attempt++ {
		other, err := u.stream(addr)
		if err == nil {
			return
		}
		u.logf("stream to %s ended: %v", addr, err)
		if time.Now().After(u.env.end) || attempt == 300 {
			u.err = fmt.Errorf("%s: gave up after %d streams: %v", u.name, attempt, err)
			return
		}
		addr = u.env.lb
		if other != "" {
			addr = other
		}
		select {
		case <-u.env.finish:
			return
		case <-time.After(50 * time.Millisecond): // a client's pause before reconnecting
		}
	}
}

var errSMDone = errors.New("done")

// stream runs one stream: nil when the user's work is done, else why it
// ended and the host a <see-other-host/> named.
func (u *smUser) stream(addr string) (string, error) {
	c, err := smOpen(addr, u.env.tls, u.name+"@localhost", u.pass)
	if err != nil {
		return "", err
	}
	defer c.conn.Close()
	u.mu.Lock()
	prev, h := u.prev, u.h
	u.mu.Unlock()
	resumed := false
	if prev != "" {
		if err := c.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", prev, h)); err != nil {
			return "", err
		}
		e, err := c.next()
		if err != nil {
			return "", err
		}
		u.mu.Lock()
		u.resumes = append(u.resumes, e.XMLName.Local)
		u.mu.Unlock()
		u.logf("resume %s: <%s>%s", prev, e.XMLName.Local, e.Inner)
		switch e.XMLName.Local {
		case "resumed":
			// The same stream goes on: the server sends again what h
			// did not cover (counted on), a sender sends again what the
			// server's h does not cover.
			x, err := strconv.Atoi(e.attr("h"))
			if err != nil {
				return "", fmt.Errorf("<resumed h='%s'/>", e.attr("h"))
			}
			u.mu.Lock()
			if u.sender && x > 0 {
				u.acked = max(u.acked, u.base+x-1)
			}
			u.mu.Unlock()
			resumed = true
		case "failed":
		default:
			return "", fmt.Errorf("resumption answered <%s/>", e.XMLName.Local)
		}
	}
	if !resumed {
		if err := c.send("<iq type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>res</resource></bind></iq>"); err != nil {
			return "", err
		}
		if e, err := c.expect("iq"); err != nil || e.attr("type") != "result" {
			return "", fmt.Errorf("bind: %v %s", err, e.Inner)
		}
		if err := c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); err != nil {
			return "", err
		}
		e, err := c.expect("enabled")
		if err != nil {
			return "", err
		}
		u.mu.Lock()
		u.prev, u.h = e.attr("id"), 0
		u.sessions++
		u.base = u.acked // messages acknowledged before this stream
		u.mu.Unlock()
	}
	u.mu.Lock()
	u.up = true
	base := u.base
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.up = false
		u.mu.Unlock()
		u.env.notify()
	}()
	if !resumed {
		// Initial presence: the first stanza counted on this stream; a
		// receiver becomes available (and gets its offline messages), a
		// sender learns its receivers' presence.
		if err := c.send("<presence/>"); err != nil {
			return "", err
		}
	}
	u.env.notify()

	dead := make(chan struct{})
	var other string
	var readErr error
	go func() {
		defer close(dead)
		other, readErr = u.read(c, base)
	}()
	finish := func() (string, error) {
		c.send("</stream:stream>")
		c.conn.Close()
		<-dead
		return "", nil
	}
	ended := func() (string, error) {
		<-dead
		return other, readErr
	}
	if !u.sender {
		select {
		case <-dead:
			return ended()
		case <-u.env.finish:
			return finish()
		}
	}

	// A sender waits for its receivers' presence (its node knows them
	// then), says it is ready, and waits for the start.
	for {
		u.mu.Lock()
		n := len(u.available)
		u.mu.Unlock()
		if n == len(u.to) {
			break
		}
		select {
		case <-dead:
			return ended()
		case <-u.changed:
		case <-time.After(time.Until(u.env.end)):
			return "", errors.New("no presence from every receiver")
		}
	}
	select {
	case <-u.ready:
	default:
		close(u.ready)
	}
	select {
	case <-u.env.start:
	case <-dead:
		return ended()
	}
	var tick <-chan time.Time
	if u.env.every > 0 {
		tk := time.NewTicker(u.env.every)
		defer tk.Stop()
		tick = tk.C
	}
	for next := u.ackedCount() + 1; ; next++ {
		lim := u.limit()
		if next > lim {
			break
		}
		for next-u.ackedCount() > u.env.window {
			select {
			case <-dead:
				return ended()
			case <-u.changed:
			case <-time.After(time.Until(u.env.end)):
				return "", errors.New("acknowledgements stopped")
			}
		}
		if tick != nil {
			select {
			case <-tick:
			case <-dead:
				return ended()
			}
		}
		msg := fmt.Sprintf("<message to='%s' type='chat' id='%s-%d'><body>%s-%d</body></message>",
			u.to[next%len(u.to)], u.name, next, u.name, next)
		if next%10 == 0 || next == u.total {
			msg += "<r xmlns='urn:xmpp:sm:3'/>"
		}
		if err := c.send(msg); err != nil {
			return ended()
		}
		u.mu.Lock()
		u.sent = max(u.sent, next)
		u.mu.Unlock()
	}
	if err := c.send("<r xmlns='urn:xmpp:sm:3'/>"); err != nil {
		return ended()
	}
	stop := u.env.stop
	for u.ackedCount() < u.limit() {
		select {
		case <-dead:
			return ended()
		case <-u.changed:
		case <-stop: // the limit is fixed now
			stop = nil
		case <-time.After(time.Until(u.env.end)):
			return "", fmt.Errorf("%d of %d acknowledged", u.ackedCount(), u.limit())
		}
	}
	u.logf("all %d acknowledged", u.limit())
	select {
	case <-u.settled:
	default:
		close(u.settled)
	}
	select {
	case <-dead:
		return ended()
	case <-u.env.finish:
		return finish()
	}
}

// read handles what the server sends on a stream until it ends: counts
// stanzas (h), answers <r/>, takes <a h/> (a sender's acknowledged count
// is base plus h less the initial presence), counts a receiver's
// messages. It returns the host of a <see-other-host/>.
func (u *smUser) read(c *smConn, base int) (string, error) {
	c.conn.SetReadDeadline(u.env.end)
	var since []string           // a receiver's bodies since its last <a/>
	bySender := map[string]int{} // a receiver's messages on this stream by sender
	defer func() {
		u.mu.Lock()
		u.unacked = append(u.unacked, slices.Clone(since))
		u.mu.Unlock()
		if !u.sender {
			u.logf("stream's messages by sender: %v; %d after the last acknowledgement", bySender, len(since))
		}
	}()
	for {
		e, err := c.next()
		if err != nil {
			return "", err
		}
		switch e.XMLName.Local {
		case "r":
			u.mu.Lock()
			h := u.h
			u.mu.Unlock()
			if err := c.send(fmt.Sprintf("<a xmlns='urn:xmpp:sm:3' h='%d'/>", h)); err != nil {
				return "", err
			}
			since = since[:0]
		case "a":
			h, err := strconv.Atoi(e.attr("h"))
			if err != nil {
				return "", fmt.Errorf("<a h='%s'/>", e.attr("h"))
			}
			if u.sender && h > 0 {
				u.mu.Lock()
				u.acked = max(u.acked, base+h-1)
				u.mu.Unlock()
				if u.env.killAt > 0 && u.env.acked() >= u.env.killAt {
					u.env.once.Do(func() { close(u.env.kill) })
				}
				u.notify()
			}
		case "message", "presence", "iq":
			u.mu.Lock()
			u.h++
			from, _, _ := strings.Cut(e.attr("from"), "/")
			switch {
			case e.XMLName.Local == "message" && e.attr("type") == "error":
				u.errors = append(u.errors, e.attr("id")+": "+e.Inner)
			case e.XMLName.Local == "message" && !u.sender:
				if m := smBodyRe.FindStringSubmatch(e.Inner); m != nil {
					u.got[m[1]]++
					bySender[strings.SplitN(m[1], "-", 2)[0]]++
					since = append(since, m[1])
					if strings.Contains(e.Inner, "urn:xmpp:delay") {
						u.delayed++
					}
				}
			case e.XMLName.Local == "presence" && u.sender && slices.Contains(u.to, from):
				if e.attr("type") == "" {
					u.available[from] = true
				}
			}
			u.mu.Unlock()
			u.notify()
		case "error": // a stream error
			if m := smOtherRe.FindStringSubmatch(e.Inner); m != nil {
				return m[1], errors.New("see-other-host " + m[1])
			}
			cond := "?"
			if m := smCondRe.FindStringSubmatch(e.Inner); m != nil {
				cond = m[1]
			}
			return "", errors.New("stream error " + cond)
		}
	}
}

// smReport checks that every message a sender had acknowledged reached its
// receiver (at least once), and logs duplicates. It returns the missing
// bodies by receiver JID.
func smReport(t *testing.T, env *smEnv) map[string][]string {
	t.Helper()
	recv := map[string]*smUser{}
	dups := 0
	for _, u := range env.users {
		if u.sender {
			continue
		}
		recv[u.name+"@localhost"] = u
		u.mu.Lock()
		for _, n := range u.got {
			if n > 1 {
				dups += n - 1
			}
		}
		u.mu.Unlock()
	}
	missing := map[string][]string{}
	for _, s := range env.users {
		if !s.sender {
			continue
		}
		acked := s.ackedCount()
		var lost []string
		for k := 1; k <= acked; k++ {
			to := s.to[k%len(s.to)]
			r := recv[to]
			body := fmt.Sprintf("%s-%d", s.name, k)
			r.mu.Lock()
			n := r.got[body]
			r.mu.Unlock()
			if n == 0 {
				lost = append(lost, body+"→"+r.name)
				missing[to] = append(missing[to], body)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d of the %d messages the server acknowledged never arrived: %s", s.name, len(lost), acked, strings.Join(lost, " "))
		}
	}
	t.Logf("duplicates (delivered more than once): %d", dups)
	return missing
}

// complete reports whether every receiver has every message its senders
// had acknowledged.
func (env *smEnv) complete() bool {
	recv := map[string]*smUser{}
	for _, u := range env.users {
		recv[u.name+"@localhost"] = u
	}
	for _, s := range env.users {
		if !s.sender {
			continue
		}
		acked := s.ackedCount()
		for k := 1; k <= acked; k++ {
			r := recv[s.to[k%len(s.to)]]
			r.mu.Lock()
			n := r.got[fmt.Sprintf("%s-%d", s.name, k)]
			r.mu.Unlock()
			if n == 0 {
				return false
			}
		}
	}
	return true
}

// dump logs every user's events (when the test failed).
func (env *smEnv) dump(t *testing.T) {
	for _, u := range env.users {
		u.mu.Lock()
		t.Logf("%s: sessions %d, acked %d, sent %d, received %d (%d delayed), resumes %v, errors %q, err %v\n  %s",
			u.name, u.sessions, u.acked, u.sent, len(u.got), u.delayed, u.resumes, u.errors, u.err, strings.Join(u.log, "\n  "))
		u.mu.Unlock()
	}
}
