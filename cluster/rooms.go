package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Group chat rooms in a cluster: one node at a time owns a room and holds
// it in its muc.Module; the other nodes forward the room's stanzas to it.
//
// Ownership is a record in the shared store (storage.Secrets, under
// "muc/owner/" and the bare room JID): the owner's node name and
// incarnation, written with compare-and-set. It holds as long as that
// node is alive in the cluster, as the session table sees it (heartbeats,
// DeadAfter): no per-room renewal. A node that needs a room whose record
// names a node it has dropped (or an earlier run of a node) swaps the
// record for its own and loads the room from the store: a take-over.
// Records are made for joins (which may create a room) and for rooms in
// the store, not for every room name someone asks about.
//
// Subject: PREFIX.node.NAME.muc carries a room stanza for NAME to handle:
// the number of times it was forwarded, a newline, the stanza as routed
// (with its stamped from). It is read through the node's inbox, after the
// row updates its sender published before it: the owner knows the
// session that joined when it answers.

// roomSuffix ends the subject of forwarded room stanzas.
const roomSuffix = ".muc"

// Limits of the rooms' forwarding.
const (
	// DefaultRoomQueue is how many forwarded room stanzas may wait for a
	// node's room worker when Rooms.Queue is 0; beyond it they are
	// refused with <resource-constraint/> (wait).
	DefaultRoomQueue = 4096
	// maxRoomHops is how often a stanza may be forwarded again by a node
	// that found it does not own the room (a take-over in flight).
	maxRoomHops = 2
	// maxOwnerCache bounds the cached owners of rooms; the cache is
	// emptied when it is full.
	maxOwnerCache = 100000
	// leasePrefix names the ownership records in storage.Secrets.
	leasePrefix = "muc/owner/"
)

func (n *Node) roomSubject(name string) string { return n.subj("node", name) + roomSuffix }

// Rooms places the rooms of a muc.Module on the nodes of a cluster. Set
// its fields and call Start after Node.Join, before the server serves;
// call Stop after the server has shut down, before
// Node.Leave.
type Rooms struct {
	// Node is this node, joined.
	Node *Node
	// MUC is the group chat module every node runs for the same service
	// domains.
	MUC *muc.Module
	// Leases keeps the ownership records; nil means the server's
	// Storage, which must then implement storage.Secrets. Every node
	// must use the same.
	Leases storage.Secrets
	// Queue bounds the forwarded room stanzas waiting on this node; 0
	// means DefaultRoomQueue.
	Queue int
	// Logger receives the logs; nil means the node's.
	Logger *slog.Logger

	srv     *treff.Server
	hosts   map[string]bool
	started time.Time
	queue   chan *nats.Msg
	ready   chan struct{} // closed when MUC is set up
	once    sync.Once
	stop    chan struct{}
	done    sync.WaitGroup

	mu     sync.Mutex
	owners map[string]owner       // by bare room JID
	joined map[string]*joinedRoom // rooms owned elsewhere that local sessions entered through this node
	peers  map[string]string      // node name: incarnation, as last checked
}

// owner is a room's ownership record.
type owner struct{ node, inc string }

func (o owner) value() []byte { return []byte(o.node + "\n" + o.inc) }

func parseOwner(b []byte) owner {
	node, inc, _ := strings.Cut(string(b), "\n")
	return owner{node, inc}
}

// joinedRoom is what a node knows of the local occupants of a room that
// another node owns: enough to tell them when that node dies.
type joinedRoom struct {
	owner owner
	nicks map[string]string // full JID: nickname
}

// Start takes the room stanzas of MUC's services in hand (it sets
// MUC.Placement) and starts watching the owners of the rooms local
// sessions entered. Call it after Node.Join and before the server is
// set up (before it serves): forwarded stanzas wait until MUC's Setup
// calls Ready.
func (r *Rooms) Start() error {
	n := r.Node
	if n == nil || n.srv == nil {
		return errors.New("cluster: Rooms needs a joined Node")
	}
	if r.MUC == nil {
		return errors.New("cluster: Rooms needs the muc.Module")
	}
	r.srv = n.srv
	r.hosts = make(map[string]bool)
	for _, h := range r.srv.Hosts {
		r.hosts[h.Domain] = true
	}
	if r.Leases == nil {
		s, ok := r.srv.Storage.(storage.Secrets)
		if !ok {
			return errors.New("cluster: rooms need a store that implements storage.Secrets (shared by the nodes)")
		}
		r.Leases = s
	}
	if r.Queue <= 0 {
		r.Queue = DefaultRoomQueue
	}
	r.started = time.Now()
	r.queue = make(chan *nats.Msg, r.Queue)
	r.ready = make(chan struct{})
	r.stop = make(chan struct{})
	r.owners = make(map[string]owner)
	r.joined = make(map[string]*joinedRoom)
	r.peers = make(map[string]string)
	r.MUC.Placement = r
	n.rooms.Store(r)
	r.done.Add(2)
	go r.work()
	go r.watch()
	return nil
}

// Ready implements the readiness hook of muc.Placement: MUC is set up.
func (r *Rooms) Ready() { r.once.Do(func() { close(r.ready) }) }

// waitReady waits until MUC is set up (Ready, called from its Setup) and
// then until the server's setup is over (Setup returns when the first
// call's work is done), or Stop; it reports whether to go on.
func (r *Rooms) waitReady() bool {
	select {
	case <-r.stop:
		return false
	case <-r.ready:
	}
	return r.srv.Setup() == nil
}

// Stop ends the forwarding to and from this node.
func (r *Rooms) Stop() {
	if r.stop == nil {
		return
	}
	r.Node.rooms.CompareAndSwap(r, nil)
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	r.done.Wait()
}

func (r *Rooms) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return r.Node.log()
}

func (r *Rooms) mine() owner { return owner{r.Node.Name, r.Node.inc} }

// Liveness of an owner, as this node sees it.
const (
	ownerMine = iota
	ownerAlive
	ownerUnknown // not heard of yet, shortly after this node started
	ownerDead
)

func (r *Rooms) state(o owner) int {
	n := r.Node
	if o.node == n.Name {
		if o.inc == n.inc {
			return ownerMine
		}
		return ownerDead // an earlier run of this node
	}
	n.mu.Lock()
	p := n.peers[o.node]
	n.mu.Unlock()
	switch {
	case p != nil && p.inc == o.inc:
		return ownerAlive
	case p != nil:
		return ownerDead // it restarted
	case time.Since(r.started) > n.deadAfter()+n.heartbeat():
		return ownerDead
	}
	return ownerUnknown
}

// Elsewhere implements muc.Placement.
func (r *Rooms) Elsewhere(ctx context.Context, st *treff.Stanza) bool {
	if !r.MUC.IsService(st.To.Domainpart()) {
		return false
	}
	o, err := r.owner(ctx, st)
	if err != nil {
		r.log().Warn("cluster: room owner unknown", "room", st.To.Bare().String(), "err", err)
		r.fail(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError, Text: "the room cannot be reached now"})
		return true
	}
	if o.node == r.Node.Name {
		return false
	}
	r.track(st, o)
	r.forward(ctx, o.node, 0, st)
	return true
}

// owner returns the node that handles the room st is for: its owner,
// taking the room over (or making it this node's) when its owner is gone
// and st may need it. A room that has no owner and is not in the store is
// handled here without a record (st is not a join: the answer is that
// there is no such room).
func (r *Rooms) owner(ctx context.Context, st *treff.Stanza) (owner, error) {
	key := st.To.Bare().String()
	r.mu.Lock()
	o, ok := r.owners[key]
	r.mu.Unlock()
	if ok {
		if s := r.state(o); s != ownerDead {
			return o, nil
		}
	}
	name := leasePrefix + key
	for range 4 {
		cur, err := r.Leases.Secret(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			if !r.worthOwning(ctx, st) {
				return r.mine(), nil
			}
			ok, err := r.Leases.SwapSecret(ctx, name, nil, r.mine().value())
			if err != nil {
				return owner{}, err
			}
			if ok {
				r.MUC.Claimed(st.To)
				r.remember(key, r.mine())
				return r.mine(), nil
			}
			continue // another node made it its own meanwhile
		}
		if err != nil {
			return owner{}, err
		}
		o := parseOwner(cur)
		if r.state(o) != ownerDead {
			r.remember(key, o)
			return o, nil
		}
		ok, err := r.Leases.SwapSecret(ctx, name, cur, r.mine().value())
		if err != nil {
			return owner{}, err
		}
		if ok {
			r.log().Info("cluster: room taken over", "room", key, "from", o.node)
			r.MUC.Claimed(st.To)
			r.remember(key, r.mine())
			return r.mine(), nil
		}
	}
	return owner{}, fmt.Errorf("cluster: the record of room %s keeps changing", key)
}

// worthOwning reports whether a room without an owner should get one for
// st: a join may create it; other stanzas need it only if it is stored.
func (r *Rooms) worthOwning(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind == treff.KindPresence && st.Type == "" && st.To.Resourcepart() != "" {
		return true
	}
	if r.MUC.Store == nil {
		return false
	}
	_, err := r.MUC.Store.Room(ctx, st.To.Bare().String())
	return !errors.Is(err, storage.ErrNotFound) // stored, or unknown: take it
}

func (r *Rooms) remember(key string, o owner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.owners) >= maxOwnerCache {
		clear(r.owners)
	}
	r.owners[key] = o
}

// track remembers the local sessions that enter a room owned by o
// through this node, and forgets those that leave it.
func (r *Rooms) track(st *treff.Stanza, o owner) {
	if st.Kind != treff.KindPresence || (st.Type != "" && st.Type != "unavailable") {
		return
	}
	s, ok := r.Node.Lookup(st.From).(*treff.Session)
	if !ok || s.Remote() {
		return
	}
	key, full := st.To.Bare().String(), st.From.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.joined[key]
	if st.Type == "unavailable" {
		if j != nil {
			delete(j.nicks, full)
			if len(j.nicks) == 0 {
				delete(r.joined, key)
			}
		}
		return
	}
	if j == nil || j.owner != o {
		j = &joinedRoom{owner: o, nicks: make(map[string]string)}
		r.joined[key] = j
	}
	j.nicks[full] = st.To.Resourcepart()
}

// forward publishes st for node to handle.
func (r *Rooms) forward(ctx context.Context, node string, hops int, st *treff.Stanza) {
	b := make([]byte, 0, len(st.Raw())+2)
	b = strconv.AppendInt(b, int64(hops), 10)
	b = append(append(b, '\n'), st.Raw()...)
	nc := r.Node.Conn
	if !nc.IsConnected() || nc.Publish(r.Node.roomSubject(node), b) != nil {
		r.fail(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout, Text: "the room's node cannot be reached now"})
	}
}

// fail answers st with an error, unless it is one; a refused join gets
// the MUC element back (XEP-0045 7.2).
func (r *Rooms) fail(ctx context.Context, st *treff.Stanza, e error) {
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	b := treff.AppendError(nil, st, e)
	if st.Kind == treff.KindPresence {
		if i := bytes.Index(b, []byte("<error")); i >= 0 {
			b = append(b[:i:i], append([]byte("<x xmlns='"+muc.NS+"'/>"), b[i:]...)...)
		}
	}
	if reply, err := treff.NewStanza(b); err == nil {
		r.srv.Route(ctx, reply)
	}
}

// onRoom takes a room stanza another node forwarded, from the inbox.
func (n *Node) onRoom(m *nats.Msg) {
	r := n.rooms.Load()
	if r != nil {
		select {
		case r.queue <- m:
			return
		default:
		}
	}
	// No rooms here (yet), or too many waiting.
	_, raw, ok := bytes.Cut(m.Data, []byte{'\n'})
	if !ok {
		return
	}
	st, err := treff.NewStanza(raw)
	if err != nil || st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	b := treff.AppendError(nil, st, stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint, Text: "the room's node is busy; try again"})
	if reply, err := treff.NewStanza(b); err == nil {
		go n.srv.Route(n.ctx, reply)
	}
}

// work handles the forwarded room stanzas, one at a time, in order.
func (r *Rooms) work() {
	defer r.done.Done()
	ctx := r.Node.ctx
	if !r.waitReady() {
		return
	}
	for {
		var m *nats.Msg
		select {
		case <-r.stop:
			return
		case m = <-r.queue:
		}
		h, raw, ok := bytes.Cut(m.Data, []byte{'\n'})
		if !ok {
			continue
		}
		hops, err := strconv.Atoi(string(h))
		if err != nil {
			continue
		}
		st, err := treff.NewStanza(raw)
		if err != nil || st.To.Localpart() == "" || !r.MUC.IsService(st.To.Domainpart()) {
			continue
		}
		o, err := r.owner(ctx, st)
		switch {
		case err != nil:
			r.log().Warn("cluster: room owner unknown", "room", st.To.Bare().String(), "err", err)
			r.fail(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError, Text: "the room cannot be reached now"})
		case o.node == r.Node.Name:
			r.MUC.Handle(ctx, st)
		case hops < maxRoomHops:
			r.forward(ctx, o.node, hops+1, st)
		default:
			r.fail(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable, Text: "the room is moving to another node; try again"})
		}
	}
}

// watch checks, every heartbeat, for nodes that went: the rooms owned
// here lose those nodes' occupants, and the local occupants of rooms
// those nodes owned are told that they are out (status 332).
func (r *Rooms) watch() {
	defer r.done.Done()
	if !r.waitReady() {
		return
	}
	t := time.NewTicker(r.Node.heartbeat())
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.check(r.Node.ctx)
	}
}

func (r *Rooms) check(ctx context.Context) {
	n := r.Node
	n.mu.Lock()
	now := make(map[string]string, len(n.peers))
	for name, p := range n.peers {
		now[name] = p.inc
	}
	n.mu.Unlock()
	r.mu.Lock()
	lost, appeared := false, false
	for name, inc := range r.peers {
		if now[name] != inc {
			lost = true
		}
	}
	for name, inc := range now {
		if r.peers[name] != inc {
			appeared = true
		}
	}
	r.peers = now
	type told struct {
		room  jid.JID
		nicks map[string]string
		node  string
	}
	var out []told
	for key, j := range r.joined {
		// Sessions that ended here are no occupants any more.
		for full := range j.nicks {
			fj, err := jid.Parse(full)
			if err != nil {
				delete(j.nicks, full)
				continue
			}
			if s, ok := n.Lookup(fj).(*treff.Session); !ok || s.Remote() {
				delete(j.nicks, full)
			}
		}
		if len(j.nicks) == 0 {
			delete(r.joined, key)
			continue
		}
		if st := r.state(j.owner); st == ownerDead {
			roomJID, err := jid.Parse(key)
			if err == nil {
				out = append(out, told{roomJID, j.nicks, j.owner.node})
			}
			delete(r.joined, key)
			if r.owners[key] == j.owner {
				delete(r.owners, key)
			}
		}
	}
	r.mu.Unlock()
	if appeared {
		// Back from a partition, maybe: the other side may have taken
		// over rooms this node still holds.
		r.recheck(ctx)
	}
	if lost {
		// Occupants whose sessions were on the nodes that went: their
		// nodes cannot tell the rooms here that they left.
		if k := r.MUC.Prune(ctx, func(real jid.JID) bool {
			return r.hosts[real.Domainpart()] && n.Lookup(real) == nil
		}); k > 0 {
			r.log().Info("cluster: occupants of a lost node left the rooms here", "occupants", k)
		}
	}
	for _, t := range out {
		for full, nick := range t.nicks {
			fj, _ := jid.Parse(full)
			s, ok := n.Lookup(fj).(*treff.Session)
			if !ok || s.Remote() {
				continue
			}
			s.Send(muc.ShutdownPresence(t.room, nick, fj))
		}
		r.log().Info("cluster: room owner gone, occupants here told (332)", "room", t.room.String(), "node", t.node, "occupants", len(t.nicks))
	}
}

// recheck reads the ownership records of the rooms this node owns and
// releases those that another node has taken over (while the two did
// not hear each other): their occupants here get status 332 and rejoin
// at the new owner.
func (r *Rooms) recheck(ctx context.Context) {
	me := r.mine()
	r.mu.Lock()
	var keys []string
	for key, o := range r.owners {
		if o == me {
			keys = append(keys, key)
		}
	}
	r.mu.Unlock()
	for _, key := range keys {
		cur, err := r.Leases.Secret(ctx, leasePrefix+key)
		if err != nil || bytes.Equal(cur, me.value()) {
			continue
		}
		r.mu.Lock()
		if r.owners[key] == me {
			delete(r.owners, key)
		}
		r.mu.Unlock()
		roomJID, err := jid.Parse(key)
		if err != nil {
			continue
		}
		if r.MUC.Release(roomJID) {
			r.log().Warn("cluster: another node took over a room held here; released it", "room", key, "owner", parseOwner(cur).node)
		}
	}
}

var _ muc.Placement = (*Rooms)(nil)
