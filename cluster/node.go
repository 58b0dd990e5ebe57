// Package cluster runs several Treff servers (nodes) as one XMPP service,
// routing between them on NATS (https://nats.io): a cluster-wide session
// table that replaces the in-process router.Local, and stanzas for a
// session on another node forwarded to that node as bytes.
//
// Each node owns the rows of its own sessions (full JID, availability,
// priority, last broadcast presence, the values modules share with
// treff.Session.SetShared, and when the resource was bound) and publishes
// every change; the other nodes apply them, ask a node they have not
// heard of yet for a snapshot of its rows, and drop every row of a node
// whose heartbeat stops for DeadAfter. The delivery rules of RFC 6121
// section 8 then run on the whole table on the sending node, exactly as on
// one node. See docs/cluster.md for what is consistent when.
//
// A cluster needs storage that every node shares (accounts, rosters,
// offline messages): the nodes must use one store, such as PostgreSQL.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Defaults of Node's limits.
const (
	DefaultHeartbeat = time.Second
	DefaultDeadAfter = 4 * time.Second
	// snapshotTimeout bounds a request for a node's rows.
	snapshotTimeout = 2 * time.Second
	// inboxSize is how many row updates and forwarded stanzas may wait
	// for the node's reader; NATS drops what comes beyond (a slow
	// consumer: a missed row is fetched again, a stanza is lost).
	inboxSize = 1 << 16
	// recentChanges bounds the own availability changes kept for the
	// repair of presence between contacts that crossed in flight.
	recentChanges = 1024
)

// Node is this server's membership in a cluster. Set its fields, then
// call Join before the server serves; call Leave after the server has
// shut down. It implements router.Table: Join makes it the server's
// Table.
type Node struct {
	// Name is the node's name, unique in the cluster: letters, digits,
	// '-' and '_'. "" means the host name (other characters replaced by
	// '_').
	Name string
	// Conn is the NATS connection (see Connect and Embedded). The caller
	// closes it after Leave.
	Conn *nats.Conn
	// Subject prefixes every NATS subject the cluster uses; "" means
	// "treff". Clusters sharing one NATS need different prefixes.
	Subject string
	// Heartbeat is how often the node tells the others it is alive. 0
	// means DefaultHeartbeat (1 s).
	Heartbeat time.Duration
	// DeadAfter is how long a node may stay silent before the others
	// drop its rows (its users become offline for them). It must be more
	// than Heartbeat; 0 means DefaultDeadAfter (4 s).
	DeadAfter time.Duration
	// Logger receives the node's logs; nil means the server's.
	Logger *slog.Logger
	// KeySecret is the key of HashKey, the same on every node. nil means
	// a random one kept in the shared store (storage.Secrets, name
	// "cluster/key-hash"), made by the first node that starts.
	KeySecret []byte

	srv   *treff.Server
	table router.Local // the effective entry per full JID
	inc   string       // this run's incarnation
	ctx   context.Context

	mu    sync.Mutex
	seq   uint64
	own   map[string]*ownRow
	peers map[string]*peer
	left  bool
	subs  []*nats.Subscription
	inbox chan *nats.Msg
	later []func() // run by finish, after the lock
	// recent are the latest availability changes of this node's
	// sessions, oldest first, at most recentChanges (see repairLocked).
	recent []*ownRow
	// pause is taken before each inbox message; tests hold it to stop
	// the inbox.
	pause   sync.Mutex
	stop    chan struct{}
	stopped chan struct{}
	dupSeen bool
	// rooms, if set, takes the room stanzas other nodes forward here
	// (rooms.go), in inbox order.
	rooms atomic.Pointer[Rooms]
	// shares are the topics shared, by subject (shared.go).
	shares  map[string]*share
	stateq  *nats.Subscription
	keyHash []byte
}

type ownRow struct {
	s     *treff.Session
	bound int64
	avail bool   // as last published
	since uint64 // seq of the update that published the last change of avail
}

type peer struct {
	name, inc string
	seen      time.Time
	seq       uint64 // highest row update applied
	synced    bool   // a snapshot was applied
	fetching  bool
	rows      map[string]*remote
	tomb      map[string]uint64 // rows removed while a snapshot is on its way
	deliver   string            // subjects
	ctl       string
}

// row is a session's state as published.
type row struct {
	JID    string            `json:"j"`
	Avail  bool              `json:"a,omitempty"`
	Prio   int               `json:"p,omitempty"`
	Bound  int64             `json:"b"`
	Pres   string            `json:"x,omitempty"`
	Shared map[string]string `json:"s,omitempty"`
	// Keep: messages to the session are kept until its client
	// acknowledges them (treff.Session.KeepsInFlight), so a node
	// forwarding one waits for the session's node to have kept it.
	Keep bool   `json:"k,omitempty"`
	Seq  uint64 `json:"q"`
	// Seen is, for a row that changes availability, the sequence number
	// of each other node's updates its node had applied when publishing
	// it (see repairLocked).
	Seen map[string]uint64 `json:"v,omitempty"`
}

// ctlMsg is a control message on the cluster subject: a heartbeat, a row
// update, a goodbye, or a snapshot.
type ctlMsg struct {
	Node string `json:"n"`
	Inc  string `json:"i"`
	Seq  uint64 `json:"s"`
	Op   string `json:"o,omitempty"` // "set", "del", "bye", "" (heartbeat)
	Row  *row   `json:"r,omitempty"`
	Rows []row  `json:"rows,omitempty"`
	// close requests
	JID  string `json:"j,omitempty"`
	Cond string `json:"c,omitempty"`
	Text string `json:"t,omitempty"`
}

var _ router.Table = (*Node)(nil)
var _ router.Updater = (*Node)(nil)
var _ router.Lister = (*Node)(nil)

func (n *Node) prefix() string {
	if n.Subject == "" {
		return "treff"
	}
	return n.Subject
}

func (n *Node) subj(parts ...string) string {
	return n.prefix() + "." + strings.Join(parts, ".")
}

func (n *Node) log() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return n.srv.Log()
}

func (n *Node) heartbeat() time.Duration {
	if n.Heartbeat <= 0 {
		return DefaultHeartbeat
	}
	return n.Heartbeat
}

func (n *Node) deadAfter() time.Duration {
	if n.DeadAfter <= 0 {
		return DefaultDeadAfter
	}
	return n.DeadAfter
}

// validName reports whether name can be a NATS subject token.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// HostName returns the host name as a node name: characters other than
// letters, digits, '-' and '_' become '_'.
func HostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "treff"
	}
	return strings.Map(func(r rune) rune {
		if validName(string(r)) {
			return r
		}
		return '_'
	}, h)
}

// Join makes the node srv's routing table (srv.Table) and joins the
// cluster: it subscribes to the other nodes' announcements and to
// stanzas for its own sessions, announces itself, and asks the nodes it
// hears of for their rows. Call it once, before srv serves.
func (n *Node) Join(srv *treff.Server) error {
	if n.Conn == nil {
		return errors.New("cluster: no NATS connection")
	}
	if n.Name == "" {
		n.Name = HostName()
	}
	if !validName(n.Name) {
		return fmt.Errorf("cluster: node name %q: use letters, digits, '-' and '_'", n.Name)
	}
	if !validName(strings.ReplaceAll(n.prefix(), ".", "_")) {
		return fmt.Errorf("cluster: subject prefix %q", n.prefix())
	}
	if n.Heartbeat < 0 || n.DeadAfter < 0 || n.deadAfter() <= n.heartbeat() {
		return fmt.Errorf("cluster: DeadAfter (%v) must be more than Heartbeat (%v)", n.deadAfter(), n.heartbeat())
	}
	var b [8]byte
	rand.Read(b[:])
	n.inc = hex.EncodeToString(b[:])
	n.srv = srv
	n.own = make(map[string]*ownRow)
	n.peers = make(map[string]*peer)
	n.stop, n.stopped = make(chan struct{}), make(chan struct{})
	srv.Table = n
	n.ctx = context.WithoutCancel(srv.Context())
	if err := n.loadKeyHash(); err != nil {
		return err
	}

	sub := func(subject string, h nats.MsgHandler) error {
		s, err := n.Conn.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subject, err)
		}
		n.subs = append(n.subs, s)
		return nil
	}
	// Row updates and stanzas for this node's sessions go through one
	// channel, read by one goroutine, in the order NATS delivered them:
	// a stanza that another node published after a row update is handed
	// over after the update is applied (a client that got a contact's
	// presence through the cluster finds the contact's node's table
	// state here).
	n.inbox = make(chan *nats.Msg, inboxSize)
	deliver := n.subj("node", n.Name, "d")
	for _, subject := range []string{n.subj("c", "*"), deliver, n.roomSubject(n.Name)} {
		s, err := n.Conn.ChanSubscribe(subject, n.inbox)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subject, err)
		}
		n.subs = append(n.subs, s)
	}
	sharePrefix, statePrefix := n.subj("share", ""), n.subj("node", n.Name, "state", "")
	go n.read(deliver, sharePrefix, statePrefix)
	if err := sub(n.subj("node", n.Name, "ctl"), n.onClose); err != nil {
		return err
	}
	if err := sub(n.subj("node", n.Name, "snap"), n.onSnapshot); err != nil {
		return err
	}
	if err := n.Conn.Flush(); err != nil {
		return fmt.Errorf("cluster: nats: %w", err)
	}
	n.sendHeartbeat()
	go n.ticker()
	return nil
}

// Leave tells the other nodes that this one stops (they drop its rows at
// once instead of after DeadAfter) and unsubscribes. Call it after the
// server has shut down, before closing Conn.
func (n *Node) Leave() {
	n.mu.Lock()
	if n.left || n.stop == nil {
		n.mu.Unlock()
		return
	}
	n.left = true
	close(n.stop)
	n.mu.Unlock()
	<-n.stopped
	if n.Conn.IsConnected() {
		n.publish(&ctlMsg{Op: "bye"})
		n.Conn.FlushTimeout(time.Second)
	}
	for _, s := range n.subs {
		s.Unsubscribe()
	}
	n.mu.Lock()
	var ended []*treff.Session
	for name, p := range n.peers {
		ended = append(ended, n.dropPeerLocked(p)...)
		delete(n.peers, name)
	}
	n.mu.Unlock()
	for _, s := range ended {
		n.srv.RemoteEnded(s)
	}
}

// read handles the inbox until Leave.
func (n *Node) read(deliver, sharePrefix, statePrefix string) {
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.inbox:
			n.pause.Lock()
			n.pause.Unlock()
			if m.Subject == deliver {
				n.onDeliver(m)
			} else if strings.HasPrefix(m.Subject, sharePrefix) {
				n.onShare(m)
			} else if strings.HasPrefix(m.Subject, statePrefix) {
				n.onState(m)
			} else if strings.HasSuffix(m.Subject, roomSuffix) {
				n.onRoom(m)
			} else {
				n.onControl(m)
			}
		}
	}
}

func (n *Node) ticker() {
	defer close(n.stopped)
	t := time.NewTicker(n.heartbeat())
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.sendHeartbeat()
		n.expirePeers(time.Now())
	}
}

func (n *Node) sendHeartbeat() { n.publish(&ctlMsg{}) }

// publish stamps m with the node's name, incarnation and sequence
// number (the next one for a row update) and publishes it on the
// cluster subject, in sequence order.
func (n *Node) publish(m *ctlMsg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishLocked(m)
}

func (n *Node) publishLocked(m *ctlMsg) {
	m.Node, m.Inc = n.Name, n.inc
	if m.Op == "set" || m.Op == "del" {
		n.seq++
		m.Row.Seq = n.seq
	}
	m.Seq = n.seq
	op := m.Op
	if op == "" {
		op = "hb"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := n.Conn.Publish(n.subj("c", op), b); err != nil {
		n.log().Warn("cluster: publish failed", "err", err)
	}
}

// expirePeers drops the nodes not heard of for DeadAfter.
func (n *Node) expirePeers(now time.Time) {
	n.mu.Lock()
	var ended []*treff.Session
	for name, p := range n.peers {
		if now.Sub(p.seen) > n.deadAfter() {
			n.log().Warn("cluster: node silent, dropping its sessions", "node", name, "sessions", len(p.rows))
			ended = append(ended, n.dropPeerLocked(p)...)
			delete(n.peers, name)
		}
	}
	announcer := n.announcerLocked("")
	n.mu.Unlock()
	for _, s := range ended {
		n.srv.RemoteEnded(s)
	}
	if len(ended) > 0 {
		go n.announceGone(ended, announcer)
	}
}

// announcerLocked reports whether this node speaks for the sessions of
// dead nodes to other servers: the node with the smallest name among
// itself and the nodes it hears from, except the one named except (a
// node that restarted does not speak for its previous run). Nodes that
// disagree on who is alive at that moment may both speak (a duplicate
// unavailable presence) or neither.
func (n *Node) announcerLocked(except string) bool {
	for name := range n.peers {
		if name != except && name < n.Name {
			return false
		}
	}
	return true
}

// announceGone sends, on behalf of the sessions of a node that went
// silent (or restarted), the unavailable presence their node would have
// sent when they ended (RFC 6121 4.5.2), from each one's full JID: for
// each that was available, to the account's other resources and to its
// contacts that receive its presence (subscription from or both, read
// from the shared roster); for each, to the JIDs it had sent directed
// presence to (RFC 6121 4.6), as its node published them with its row
// (treff.SharedDirected). Every surviving node delivers to its own
// sessions of local accounts; the announcer (see announcerLocked) routes
// to other servers' users and services. Service domains of this cluster
// (group chat) are not told: they drop the dead node's sessions
// themselves.
func (n *Node) announceGone(gone []*treff.Session, announcer bool) {
	if n.srv.Storage == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	for _, g := range gone {
		for _, to := range n.goneTargets(ctx, g) {
			domain := to.Domainpart()
			switch {
			case n.srv.IsLocal(domain):
				n.tellLocal(g, to)
			case n.srv.Serves(domain) || !announcer:
			default:
				st, err := treff.NewStanza(unavailable(g.JID(), to))
				if err != nil {
					continue
				}
				n.srv.Route(ctx, st)
			}
		}
	}
}

// goneTargets returns whom g's unavailable presence goes to (see
// announceGone), each once.
func (n *Node) goneTargets(ctx context.Context, g *treff.Session) []jid.JID {
	var targets []jid.JID
	seen := map[string]bool{}
	add := func(j jid.JID) {
		if k := j.String(); !seen[k] && !j.Equal(g.JID()) {
			seen[k] = true
			targets = append(targets, j)
		}
	}
	if g.Available() {
		user := g.JID().Bare()
		add(user)
		items, _, err := n.srv.Storage.Roster(ctx, user.String())
		if err != nil {
			n.log().Warn("cluster: roster read failed", "user", user.String(), "err", err)
		}
		for _, it := range items {
			if it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth {
				continue
			}
			if c, err := jid.Parse(it.JID); err == nil {
				add(c)
			}
		}
	}
	if d := g.Shared(treff.SharedDirected); d != "" {
		for _, line := range strings.Split(d, "\n") {
			if j, err := jid.Parse(line); err == nil {
				add(j)
			}
		}
	}
	return targets
}

// tellLocal sends g's unavailable presence to this node's sessions of a
// local account: the session bound to to if it is a full JID, else every
// available one of the account (but g itself).
func (n *Node) tellLocal(g *treff.Session, to jid.JID) {
	if to.Resourcepart() != "" {
		if s := n.srv.Session(to); s != nil && !s.Remote() {
			s.Send(unavailable(g.JID(), s.JID()))
		}
		return
	}
	for _, s := range n.srv.Sessions(to) {
		if s.Remote() || !s.Available() || s.JID().Equal(g.JID()) {
			continue
		}
		s.Send(unavailable(g.JID(), s.JID()))
	}
}

// unavailable returns <presence from='FROM' to='TO' type='unavailable'/>.
func unavailable(from, to jid.JID) []byte {
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, from.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to.String())
	return append(b, "' type='unavailable'/>"...)
}

// dropPeerLocked removes every row of p from the table and returns the
// sessions to end.
func (n *Node) dropPeerLocked(p *peer) []*treff.Session {
	var out []*treff.Session
	for full, r := range p.rows {
		delete(p.rows, full)
		n.table.Remove(r.sess)
		n.resolveLocked(full)
		out = append(out, r.sess)
	}
	return out
}

// onControl handles heartbeats, row updates and goodbyes. They come on
// one subscription, so in the order each node published them.
func (n *Node) onControl(msg *nats.Msg) {
	var m ctlMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || !validName(m.Node) {
		return
	}
	if m.Node == n.Name {
		if m.Inc != n.inc {
			n.mu.Lock()
			dup := !n.dupSeen
			n.dupSeen = true
			n.mu.Unlock()
			if dup {
				n.log().Error("cluster: another node uses this node's name", "node", n.Name)
			}
		}
		return
	}
	n.mu.Lock()
	if n.left {
		n.mu.Unlock()
		return
	}
	var ended []*treff.Session
	var closing []*treff.Session
	p := n.peers[m.Node]
	if m.Op == "bye" {
		if p != nil && p.inc == m.Inc {
			ended = n.dropPeerLocked(p)
			delete(n.peers, m.Node)
		}
		n.mu.Unlock()
		for _, s := range ended {
			n.srv.RemoteEnded(s)
		}
		return
	}
	if p != nil && p.inc != m.Inc {
		// The node restarted: what it had is gone.
		ended = n.dropPeerLocked(p)
		restarted := slices.Clone(ended)
		announcer := n.announcerLocked(m.Node)
		n.later = append(n.later, func() { go n.announceGone(restarted, announcer) })
		p = nil
	}
	fetch := false
	if p == nil {
		p = &peer{name: m.Node, inc: m.Inc, rows: make(map[string]*remote), tomb: make(map[string]uint64),
			deliver: n.subj("node", m.Node, "d"), ctl: n.subj("node", m.Node, "ctl")}
		n.peers[m.Node] = p
		fetch = true
		n.log().Info("cluster: node up", "node", m.Node)
		// Its counts (shared.go): what it counted before this node
		// heard of it, or everything if this node just started.
		name := m.Node
		n.later = append(n.later, func() { go n.askState(name, "") })
	}
	p.seen = time.Now()
	switch m.Op {
	case "set", "del":
		if m.Row == nil {
			break
		}
		if p.synced && m.Row.Seq != p.seq+1 && m.Row.Seq > p.seq {
			fetch = true // missed an update
		}
		if m.Row.Seq > p.seq {
			p.seq = m.Row.Seq
		}
		if m.Op == "set" {
			closing = n.setRowLocked(p, *m.Row, closing)
		} else {
			if s := n.delRowLocked(p, m.Row.JID, m.Row.Seq); s != nil {
				ended = append(ended, s)
			}
		}
	case "":
		if !p.synced || m.Seq > p.seq {
			fetch = true // never synced (a request failed), or missed an update
		}
	}
	if fetch && !p.fetching {
		p.fetching = true
		go n.fetch(p.name, p.inc)
	}
	n.mu.Unlock()
	n.finish(ended, closing)
}

func (n *Node) finish(ended, closing []*treff.Session) {
	n.mu.Lock()
	later := n.later
	n.later = nil
	n.mu.Unlock()
	for _, f := range later {
		f()
	}
	for _, s := range ended {
		n.srv.RemoteEnded(s)
	}
	for _, s := range closing {
		s.Close("conflict", "replaced by a new connection with the same resource")
	}
}

// setRowLocked applies a row of p, unless it is older than what p
// announced already; it appends to closing the local sessions a newer
// remote one replaces.
func (n *Node) setRowLocked(p *peer, rw row, closing []*treff.Session) []*treff.Session {
	if seq, ok := p.tomb[rw.JID]; ok && seq >= rw.Seq {
		return closing
	}
	full, err := jid.Parse(rw.JID)
	if err != nil || full.Resourcepart() == "" {
		return closing
	}
	r := p.rows[rw.JID]
	if r != nil && r.seq >= rw.Seq {
		return closing
	}
	st := &rstate{avail: rw.Avail, prio: rw.Prio, shared: rw.Shared, keep: rw.Keep}
	if rw.Pres != "" {
		st.pres, _ = treff.NewStanza([]byte(rw.Pres))
	}
	if r == nil || r.bound != rw.Bound {
		if r != nil {
			n.table.Remove(r.sess)
			n.srv.RemoteEnded(r.sess) // not under a table lock: fine
		}
		r = &remote{n: n, p: p, jid: full, full: rw.JID, bound: rw.Bound}
		r.st.Store(&rstate{})
		r.sess = n.srv.RemoteSession(r)
		p.rows[rw.JID] = r
	}
	was := r.seq != 0 && r.st.Load().avail
	r.seq = rw.Seq
	r.st.Store(st)
	delete(p.tomb, rw.JID)
	if rw.Avail != was {
		n.repairLocked(r, rw)
	}
	if o := n.own[rw.JID]; o != nil && newer(rw.Bound, p.name, o.bound, n.Name) {
		// RFC 6120 7.7.2.2 across nodes: the newer session wins.
		closing = append(closing, o.s)
	}
	n.resolveLocked(rw.JID)
	return closing
}

// repairLocked makes up for presence that crossed in flight: a remote
// session r that became available (or unavailable) broadcast its
// presence to the account's resources its node knew available (RFC 6121
// 4.2.2, 4.5.2), and learnt theirs. A local resource that became
// available after the update r's node had applied from this node (in
// rw.Seen) was missed both ways, so this node sends r's presence to it,
// and its presence to r. Duplicates (the broadcast caught it after all)
// are possible and harmless; a miss is not.
func (n *Node) repairLocked(r *remote, rw row) {
	bare := r.jid.Bare()
	seen := rw.Seen[n.Name]
	var pres *treff.Stanza
	if rw.Avail {
		pres = r.st.Load().pres
	}
	var buf [8]router.Entry
	for _, e := range n.table.Resources(buf[:0], bare) {
		o := n.own[e.JID().String()]
		if o == nil || router.Entry(o.s) != e || !o.avail || o.since <= seen {
			continue
		}
		s := o.s
		// Sent once the lock is released (Send may store for a
		// hibernating session).
		if pres != nil {
			n.later = append(n.later, func() {
				s.Send(pres.WithAddresses(r.jid, s.JID()).Raw())
				if mine := s.Presence(); mine != nil {
					r.Send(mine.WithAddresses(s.JID(), r.jid).Raw())
				}
			})
		} else if !rw.Avail {
			b := []byte("<presence from='")
			b = treff.AppendEscaped(b, r.full)
			b = append(b, "' to='"...)
			b = treff.AppendEscaped(b, s.JID().String())
			b = append(b, "' type='unavailable'/>"...)
			n.later = append(n.later, func() { s.Send(b) })
		}
	}
	// Contacts: this node's sessions of other accounts that became
	// available after what r's node had seen. Whether presence goes
	// between them depends on the subscription, in the shared roster:
	// read after the lock, outside the inbox's goroutine.
	if !rw.Avail || pres == nil {
		return
	}
	var cands []*treff.Session
	for i := len(n.recent) - 1; i >= 0; i-- {
		o := n.recent[i]
		if o.since <= seen {
			break
		}
		if o.avail && n.own[o.s.JID().String()] == o && !o.s.JID().Bare().Equal(bare) {
			cands = append(cands, o.s)
		}
	}
	if len(cands) > 0 {
		n.later = append(n.later, func() { go n.repairContacts(r, pres, cands) })
	}
}

// repairContacts sends r's presence to the sessions in cands whose
// accounts receive r's account's presence (subscription from or both in
// its roster), and their presence to r where r's account receives
// theirs (to or both).
func (n *Node) repairContacts(r *remote, pres *treff.Stanza, cands []*treff.Session) {
	if n.srv.Storage == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	items, _, err := n.srv.Storage.Roster(ctx, r.jid.Bare().String())
	if err != nil {
		n.log().Warn("cluster: roster read failed", "user", r.jid.Bare().String(), "err", err)
		return
	}
	subs := make(map[string]storage.Subscription, len(items))
	for _, it := range items {
		subs[it.JID] = it.Subscription
	}
	for _, s := range cands {
		sub, ok := subs[s.JID().Bare().String()]
		if !ok {
			continue
		}
		if sub == storage.SubFrom || sub == storage.SubBoth {
			s.Send(pres.WithAddresses(r.jid, s.JID()).Raw())
		}
		if sub == storage.SubTo || sub == storage.SubBoth {
			if mine := s.Presence(); mine != nil {
				r.Send(mine.WithAddresses(s.JID(), r.jid).Raw())
			}
		}
	}
}

// delRowLocked removes p's row for full and returns its session to end.
func (n *Node) delRowLocked(p *peer, full string, seq uint64) *treff.Session {
	if p.fetching && seq > p.tomb[full] {
		// A snapshot taken before this removal may still come.
		p.tomb[full] = seq
	}
	r := p.rows[full]
	if r == nil || r.seq > seq {
		return nil
	}
	delete(p.rows, full)
	n.table.Remove(r.sess)
	n.resolveLocked(full)
	return r.sess
}

// newer reports whether a session bound at b1 on node n1 is newer than
// one bound at b2 on n2 (ties broken by node name).
func newer(b1 int64, n1 string, b2 int64, n2 string) bool {
	if b1 != b2 {
		return b1 > b2
	}
	return n1 > n2
}

// resolveLocked makes the newest session bound to full (this node's or
// another's) the table's entry for it.
func (n *Node) resolveLocked(full string) {
	var best *treff.Session
	var bestBound int64
	bestNode := ""
	if o := n.own[full]; o != nil {
		best, bestBound, bestNode = o.s, o.bound, n.Name
	}
	for _, p := range n.peers {
		if r := p.rows[full]; r != nil && (best == nil || newer(r.bound, p.name, bestBound, bestNode)) {
			best, bestBound, bestNode = r.sess, r.bound, p.name
		}
	}
	if best == nil {
		return
	}
	j := best.JID()
	if n.table.Lookup(j) != router.Entry(best) {
		n.table.Add(best)
	}
}

// fetch asks node name for its rows and applies them.
func (n *Node) fetch(name, inc string) {
	msg, err := n.Conn.Request(n.subj("node", name, "snap"), nil, snapshotTimeout)
	var m ctlMsg
	if err == nil {
		err = json.Unmarshal(msg.Data, &m)
	}
	n.mu.Lock()
	p := n.peers[name]
	if p == nil || p.inc != inc {
		n.mu.Unlock()
		return
	}
	p.fetching = false
	if err != nil || m.Inc != inc {
		// Tried again at its next heartbeat.
		clear(p.tomb)
		n.mu.Unlock()
		if err != nil {
			n.log().Warn("cluster: no snapshot from node", "node", name, "err", err)
		}
		return
	}
	var closing, ended []*treff.Session
	in := make(map[string]bool, len(m.Rows))
	for _, rw := range m.Rows {
		in[rw.JID] = true
		closing = n.setRowLocked(p, rw, closing)
	}
	for full, r := range p.rows {
		if !in[full] && r.seq <= m.Seq {
			if s := n.delRowLocked(p, full, r.seq); s != nil {
				ended = append(ended, s)
			}
		}
	}
	clear(p.tomb) // needed only while a snapshot was on its way
	if m.Seq > p.seq {
		p.seq = m.Seq
	}
	p.synced = true
	n.mu.Unlock()
	n.finish(ended, closing)
}

// onSnapshot answers another node's request for this node's rows.
func (n *Node) onSnapshot(msg *nats.Msg) {
	n.mu.Lock()
	m := &ctlMsg{Node: n.Name, Inc: n.inc, Seq: n.seq}
	for full, o := range n.own {
		rw := rowOf(full, o)
		m.Rows = append(m.Rows, rw)
	}
	n.mu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	msg.Respond(b)
}

func rowOf(full string, o *ownRow) row {
	rw := row{JID: full, Avail: o.s.Available(), Prio: o.s.Priority(), Bound: o.bound, Shared: o.s.SharedValues(), Keep: o.s.KeepsInFlight()}
	if p := o.s.Presence(); p != nil {
		rw.Pres = string(p.Raw())
	}
	return rw
}

// onDeliver hands a stanza another node forwarded to the local session.
func (n *Node) onDeliver(msg *nats.Msg) {
	i := bytes.IndexByte(msg.Data[:min(len(msg.Data), 3072)], '\n')
	if i < 0 {
		return
	}
	raw := msg.Data[i+1:] // this message's own buffer: the session may keep it
	// The common case without parsing the JID: the session is ours.
	n.mu.Lock()
	o := n.own[string(msg.Data[:i])]
	n.mu.Unlock()
	if o != nil {
		err := o.s.Send(raw)
		if err == nil || !errors.Is(err, treff.ErrSessionClosed) {
			// Delivered, or not kept (a message its sender's node
			// waits for: it answers the sender with the error).
			n.answer(msg, err)
			return
		}
	}
	to, err := jid.Parse(string(msg.Data[:i]))
	if err != nil {
		n.answer(msg, treff.ErrNoSession)
		return
	}
	err = n.srv.Deliver(n.ctx, to, raw)
	if err != nil && !errors.Is(err, treff.ErrNoSession) && !errors.Is(err, treff.ErrSessionClosed) {
		n.log().Warn("cluster: forwarded stanza not delivered", "to", to.String(), "err", err)
	}
	n.answer(msg, err)
}

// Answers to a forwarded message whose sender's node waits until it is
// kept (treff.Server.KeepInFlight): an empty one when it was handed
// over, answerGone when the session is gone and the sender's node should
// take the message elsewhere, answerNotKept and the stanza error as JSON
// when it could not be stored.
const (
	answerGone    = "gone"
	answerNotKept = "not-kept\n"
)

// answer tells the node that forwarded msg, if it waits for it, what
// became of the stanza.
func (n *Node) answer(msg *nats.Msg, err error) {
	if msg.Reply == "" {
		return
	}
	var data []byte
	switch {
	case err == nil:
	case errors.Is(err, treff.ErrSessionClosed) || errors.Is(err, treff.ErrNoSession):
		data = []byte(answerGone)
	default:
		e, ok := stanza.FromError(err)
		if !ok {
			e = stanza.InternalServerError.WithText("")
		}
		b, _ := json.Marshal(notKept{Type: string(e.ErrorType()), Cond: string(e.Condition), Text: e.Text})
		data = append([]byte(answerNotKept), b...)
	}
	if rerr := msg.Respond(data); rerr != nil {
		n.log().Warn("cluster: answering a forwarded message", "err", rerr)
	}
}

// notKept is the stanza error of answerNotKept.
type notKept struct {
	Type string `json:"type,omitempty"`
	Cond string `json:"cond,omitempty"`
	Text string `json:"text,omitempty"`
}

// keepable reports whether raw is a message its recipient's node keeps
// with treff.Server.KeepInFlight (type chat or normal), from its start
// tag only. A '>' in an attribute value before 'type' makes it say
// true for another type: one needless wait, no harm.
func keepable(raw []byte) bool {
	if !bytes.HasPrefix(raw, []byte("<message")) {
		return false
	}
	tag := raw
	if end := bytes.IndexByte(raw, '>'); end >= 0 {
		tag = raw[:end]
	}
	for _, t := range [...]string{"error", "groupchat", "headline"} {
		if bytes.Contains(tag, []byte(" type='"+t+"'")) || bytes.Contains(tag, []byte(` type="`+t+`"`)) {
			return false
		}
	}
	return true
}

// onClose closes a local session another node asked to close (a
// resource conflict, an account deleted or suspended there).
func (n *Node) onClose(msg *nats.Msg) {
	var m ctlMsg
	if json.Unmarshal(msg.Data, &m) != nil {
		return
	}
	n.mu.Lock()
	o := n.own[m.JID]
	n.mu.Unlock()
	if o != nil {
		o.s.Close(m.Cond, m.Text)
	}
}

// Add implements router.Table for the server's local sessions.
func (n *Node) Add(e router.Entry) router.Entry {
	s, ok := e.(*treff.Session)
	if !ok || s.Remote() {
		return n.table.Add(e)
	}
	full := s.JID().String()
	n.mu.Lock()
	prev := n.table.Lookup(s.JID())
	o := &ownRow{s: s, bound: time.Now().UnixNano()}
	n.own[full] = o
	n.publishRowLocked(full, o)
	n.resolveLocked(full)
	lost := n.table.Lookup(s.JID()) != router.Entry(s)
	n.mu.Unlock()
	if lost {
		// A session bound at the same moment on another node is newer.
		s.Close("conflict", "replaced by a new connection with the same resource")
		return nil
	}
	if prev == router.Entry(s) {
		return nil
	}
	return prev
}

// Remove implements router.Table.
func (n *Node) Remove(e router.Entry) bool {
	s, ok := e.(*treff.Session)
	if !ok || s.Remote() {
		return n.table.Remove(e)
	}
	full := s.JID().String()
	n.mu.Lock()
	defer n.mu.Unlock()
	removed := n.table.Remove(e)
	if o := n.own[full]; o != nil && o.s == s {
		delete(n.own, full)
		n.publishLocked(&ctlMsg{Op: "del", Row: &row{JID: full}})
		n.resolveLocked(full)
	}
	return removed
}

// Update implements router.Updater: it publishes a local session's new
// availability, priority, presence or shared values.
func (n *Node) Update(e router.Entry) {
	s, ok := e.(*treff.Session)
	if !ok || s.Remote() {
		return
	}
	full := s.JID().String()
	n.mu.Lock()
	defer n.mu.Unlock()
	if o := n.own[full]; o != nil && o.s == s {
		n.publishRowLocked(full, o)
	}
}

// publishRowLocked publishes o's current state. A change of
// availability carries what this node had applied of the others'
// updates, and is remembered with its sequence number.
func (n *Node) publishRowLocked(full string, o *ownRow) {
	rw := rowOf(full, o)
	if rw.Avail != o.avail {
		rw.Seen = make(map[string]uint64, len(n.peers))
		for name, p := range n.peers {
			rw.Seen[name] = p.seq
		}
	}
	n.publishLocked(&ctlMsg{Op: "set", Row: &rw})
	if rw.Avail != o.avail {
		o.avail, o.since = rw.Avail, rw.Seq
		if len(n.recent) == recentChanges {
			n.recent = append(n.recent[:0], n.recent[1:]...)
		}
		n.recent = append(n.recent, o)
	}
}

// Resources implements router.Table: the sessions of every node.
func (n *Node) Resources(dst []router.Entry, bare jid.JID) []router.Entry {
	return n.table.Resources(dst, bare)
}

// Lookup implements router.Table.
func (n *Node) Lookup(full jid.JID) router.Entry { return n.table.Lookup(full) }

// Len implements router.Table: the sessions of every node.
func (n *Node) Len() int { return n.table.Len() }

// AppendAll implements router.Lister: the sessions of every node (one
// entry per full JID: the newest bind where two nodes have one).
func (n *Node) AppendAll(dst []router.Entry) []router.Entry { return n.table.AppendAll(dst) }

// Nodes returns the names of the other nodes this node hears from, for
// health checks and tests.
func (n *Node) Nodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.peers))
	for name := range n.peers {
		out = append(out, name)
	}
	return out
}

// remote is a session on another node.
type remote struct {
	n     *Node
	p     *peer
	jid   jid.JID
	full  string
	bound int64
	seq   uint64 // under n.mu
	st    atomic.Pointer[rstate]
	sess  *treff.Session
}

type rstate struct {
	avail  bool
	keep   bool // messages are kept until acknowledged there (row.Keep)
	prio   int
	pres   *treff.Stanza
	shared map[string]string
}

var _ treff.Remote = (*remote)(nil)

func (r *remote) JID() jid.JID    { return r.jid }
func (r *remote) Available() bool { return r.st.Load().avail }
func (r *remote) Priority() int   { return r.st.Load().prio }
func (r *remote) Presence() *treff.Stanza {
	return r.st.Load().pres
}
func (r *remote) Shared(key string) string { return r.st.Load().shared[key] }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Send forwards raw to the session's node. While this node has no NATS
// connection it reports the session closed, so that the router takes
// the message elsewhere (another session, offline storage).
func (r *remote) Send(raw []byte) error {
	nc := r.n.Conn
	if !nc.IsConnected() {
		return treff.ErrSessionClosed
	}
	bp := bufPool.Get().(*[]byte)
	b := append(append(append((*bp)[:0], r.full...), '\n'), raw...)
	var err error
	if r.st.Load().keep && keepable(raw) {
		err = r.sendKept(b)
	} else if nc.Publish(r.p.deliver, b) != nil {
		err = treff.ErrSessionClosed
	}
	if cap(b) <= 64<<10 {
		*bp = b
		bufPool.Put(bp)
	}
	return err
}

// sendKept forwards a message and waits until the session's node has
// it (kept, if the session keeps messages in flight), so that the
// sender is not told it was handled while it exists only in this node's
// memory and in flight. A node that does not answer in DeadAfter is
// taken for gone: the router takes the message elsewhere (another
// session, offline storage), one copy too many if the node had it after
// all.
func (r *remote) sendKept(b []byte) error {
	resp, err := r.n.Conn.Request(r.p.deliver, b, r.n.deadAfter())
	switch {
	case errors.Is(err, nats.ErrTimeout):
		r.n.log().Warn("cluster: a node did not answer for a forwarded message", "node", r.p.name)
		return treff.ErrSessionClosed
	case err != nil: // no responders: the node is gone
		return treff.ErrSessionClosed
	case len(resp.Data) == 0:
		return nil
	case bytes.HasPrefix(resp.Data, []byte(answerNotKept)):
		var nk notKept
		json.Unmarshal(resp.Data[len(answerNotKept):], &nk)
		return treff.NotKept(stanza.Error{Type: stanza.ErrorType(nk.Type), Condition: stanza.Condition(nk.Cond), Text: nk.Text})
	}
	return treff.ErrSessionClosed
}

// Close asks the session's node to close it.
func (r *remote) Close(condition, text string) {
	b, _ := json.Marshal(&ctlMsg{Node: r.n.Name, JID: r.full, Cond: condition, Text: text})
	r.n.Conn.Publish(r.p.ctl, b)
}
