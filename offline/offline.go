// Package offline implements XEP-0160: Best Practices for Handling Offline
// Messages for a Treff server.
//
// A message of type normal or chat for an account with no available
// resource (RFC 6121 8.5.2.2) is stored with its arrival time. When the
// user next sends initial presence with a non-negative priority, the
// stored messages are delivered to that resource, each with a XEP-0203
// <delay/> stamp, and deleted from storage. A per-user limit protects the
// server: beyond it the sender gets <resource-constraint/>.
//
// Messages without a body (chat states, receipts) are dropped silently
// rather than stored or bounced, unless the sender asks with a XEP-0334
// <store/> hint; <no-store/> and <no-permanent-store/> hints are honoured
// the same way.
//
// The module is also the server's treff.Keeper: a message for a session
// that hibernates (XEP-0198: its connection broke and it waits to be
// resumed) is written to offline storage before its sender's stanza
// counts as handled, so a message the server acknowledged survives a
// crash; after a restart the account's next session receives it here,
// once, with the time it arrived. The stored copy is deleted when the
// resumed client acknowledges the message (or another session of the
// account receives it when the hibernating one ends). A message that
// cannot be stored (the limit is reached, the disk failed) is not taken:
// its sender gets <resource-constraint/> or <internal-server-error/>.
package offline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the feature advertised for offline message storage (XEP-0160
// refers to the legacy msgoffline feature).
const NS = "msgoffline"

// Module stores and delivers offline messages.
type Module struct {
	// Store keeps the messages. nil means the server's Storage.
	Store storage.Offline
	// Limit is the most messages kept per user. 0 means 1000; negative
	// means no limit.
	Limit int
	// Shared, in a cluster (cluster.Node), tells the other nodes each
	// time this one stores a message for an account, so that a session
	// of it there that had already read the store at its initial
	// presence reads it again: a node routes by its view of the
	// cluster, which can miss a session that has just come online on
	// another node, and would otherwise leave the message in storage
	// until the next login. nil: one server.
	Shared Sharer

	srv     *treff.Server
	initial *treff.SessionState[bool] // initial presence seen
	now     func() time.Time
	publish func([]byte) // to Shared's other nodes; nil without

	// held are the stored messages a hibernating session still owns
	// (Keep until Release or Leave), and those a Deliver is handing out
	// until it has deleted them: another Deliver leaves them alone.
	// Memory only: after a crash every stored message is the account's.
	mu   sync.Mutex
	held map[heldKey]struct{}

	// Released kept messages wait here to be deleted together (Release):
	// a client's acknowledgement need not wait for a delete, and at a
	// few hundred messages a second one delete per acknowledgement was
	// a commit each. They stay held until deleted.
	rmu      sync.Mutex
	released map[string][]uint64
	nrel     int
	relTimer *time.Timer
}

// releaseWait is how long released messages may wait to be deleted
// together, and releaseBatch how many start the delete at once. A crash
// meanwhile delivers them once more at the next login: a copy too many,
// never a loss.
const (
	releaseWait  = 100 * time.Millisecond
	releaseBatch = 256
)

var _ treff.Stopper = (*Module)(nil)

// Stop implements treff.Stopper: it deletes the released messages that
// wait, so that a clean restart delivers none of them again.
func (m *Module) Stop(ctx context.Context) error {
	m.flushReleased(ctx)
	return nil
}

// release queues the deletion of kept messages a client acknowledged.
func (m *Module) release(user string, ids []uint64) {
	m.rmu.Lock()
	if m.released == nil {
		m.released = make(map[string][]uint64)
	}
	m.released[user] = append(m.released[user], ids...)
	m.nrel += len(ids)
	now := m.nrel >= releaseBatch
	if !now && m.relTimer == nil {
		m.relTimer = time.AfterFunc(releaseWait, func() { m.flushReleased(context.Background()) })
	}
	m.rmu.Unlock()
	if now {
		go m.flushReleased(context.Background())
	}
}

// flushReleased deletes the released messages that wait, and lets go of
// them.
func (m *Module) flushReleased(ctx context.Context) {
	m.rmu.Lock()
	rel := m.released
	m.released, m.nrel = nil, 0
	if m.relTimer != nil {
		m.relTimer.Stop()
		m.relTimer = nil
	}
	m.rmu.Unlock()
	for user, ids := range rel {
		if err := m.Store.DeleteOfflineMessages(ctx, user, ids); err != nil {
			// They are the account's now: delivered once more at its
			// next login rather than lost.
			m.srv.Log().Error("offline: deleting acknowledged kept messages failed", "user", user, "n", len(ids), "err", err)
		}
		m.unhold(user, ids)
	}
}

type heldKey struct {
	user string
	id   uint64
}

// Sharer is what the module needs of a cluster (cluster.Node.Share):
// a topic whose events every other node receives, in the order this one
// published them.
type Sharer interface {
	Share(topic string, recv func(data []byte), state func() [][]byte) (publish func(data []byte), err error)
}

// ShareTopic is the topic on which a node tells the others that it
// stored a message for an account (the payload is the bare JID).
const ShareTopic = "offline"

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "offline" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.initial = treff.NewSessionState[bool]()
	if m.Store == nil {
		if m.srv.Storage == nil {
			return errors.New("offline: no storage")
		}
		m.Store = m.srv.Storage
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.Shared != nil {
		pub, err := m.Shared.Share(ShareTopic, m.storedElsewhere, nil)
		if err != nil {
			return fmt.Errorf("offline: sharing: %w", err)
		}
		m.publish = pub
	}
	r.AddFeature(NS)
	r.OnUndeliverable(m.store)
	r.KeepUnacked(keeper{m})
	r.OnClientStanza(m.presence)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if err := m.Store.DeleteOffline(ctx, user.String()); err != nil {
			return fmt.Errorf("offline: deleting offline messages: %w", err)
		}
		return nil
	})
	return nil
}

func (m *Module) limit() int {
	switch {
	case m.Limit == 0:
		return 1000
	case m.Limit < 0:
		return 0
	}
	return m.Limit
}

// storable reports whether a message is worth keeping.
func storable(st *treff.Stanza) bool {
	inner := st.Inner()
	if strings.Contains(inner, "urn:xmpp:hints") {
		if strings.Contains(inner, "<no-store") || strings.Contains(inner, "<no-permanent-store") {
			return false
		}
		if strings.Contains(inner, "<store") {
			return true
		}
	}
	return strings.Contains(inner, "<body")
}

// offlineKind reports whether offline storage is for a stanza of st's
// kind and type (RFC 6121 8.5.2.2: normal and chat messages).
func offlineKind(st *treff.Stanza) bool {
	return st.Kind == treff.KindMessage && (st.Type == "" || st.Type == "normal" || st.Type == "chat")
}

func (m *Module) store(ctx context.Context, st *treff.Stanza) bool {
	if !offlineKind(st) {
		return false
	}
	if !storable(st) {
		return true // nothing worth keeping or bouncing
	}
	user := st.To.Bare().String()
	_, err := m.Store.PushOffline(ctx, user, storage.OfflineMessage{Received: m.now().UTC(), Stanza: st.Raw()}, m.limit())
	switch {
	case err == nil:
		m.stored(ctx, st.To.Bare())
		return true
	case errors.Is(err, storage.ErrQuotaExceeded):
		m.bounce(ctx, st, stanza.ResourceConstraint.WithText("the recipient's offline storage is full"))
		m.srv.Log().Info("stanza not delivered", "from", st.From.String(), "to", user, "why", "offline quota")
		return true
	default:
		m.srv.Log().Error("offline store failed", "to", user, "err", err)
		m.bounce(ctx, st, stanza.InternalServerError)
		return true
	}
}

// stored runs after a message for user went to storage. Sessions of the
// account that have had their initial presence read the store then; one
// that did so after the router looked for it and before the write
// landed (it came online on another node, which this node had not heard
// of yet) would miss the message until its next login. So the account's
// available sessions here that have had their initial presence read the
// store again, and so do the other nodes' when told (Shared). Either a
// session's initial read comes after the write (and sees it), or its
// initial presence was marked before this look (here) or before the
// other node hears of the write (there): no message stays behind. A
// message may then come twice, never not at all.
func (m *Module) stored(ctx context.Context, user jid.JID) {
	m.redeliver(ctx, user)
	if m.publish != nil {
		m.publish([]byte(user.String()))
	}
}

// storedElsewhere is told by another node that it stored a message for
// the account in data. It runs on the node's inbox goroutine: the store
// is read on another.
func (m *Module) storedElsewhere(data []byte) {
	user, err := jid.Parse(string(data))
	if err != nil || len(m.waiting(user)) == 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m.redeliver(ctx, user)
	}()
}

// waiting returns the account's sessions on this node that would have
// got a message from the store: available with a non-negative priority,
// and after their initial presence.
func (m *Module) waiting(user jid.JID) []*treff.Session {
	var out []*treff.Session
	for _, s := range m.srv.Sessions(user.Bare()) {
		if s.Remote() || !s.Available() || s.Priority() < 0 {
			continue
		}
		if seen, _ := m.initial.Get(s); seen {
			out = append(out, s)
		}
	}
	return out
}

// redeliver hands the stored messages to the account's waiting sessions
// (the first that takes them; Deliver leaves what another is given).
func (m *Module) redeliver(ctx context.Context, user jid.JID) {
	for _, s := range m.waiting(user) {
		m.Deliver(ctx, s)
	}
}

// keeper keeps hibernating sessions' messages in offline storage.
type keeper struct{ m *Module }

// Keep implements treff.Keeper.
func (k keeper) Keep(ctx context.Context, s *treff.Session, st *treff.Stanza) (uint64, bool, error) {
	if !offlineKind(st) || !storable(st) {
		return 0, false, nil
	}
	m := k.m
	user := s.JID().Bare().String()
	id, err := m.Store.PushOffline(ctx, user, storage.OfflineMessage{Received: m.now().UTC(), Stanza: st.Raw()}, m.limit())
	switch {
	case err == nil:
		m.mu.Lock()
		if m.held == nil {
			m.held = make(map[heldKey]struct{})
		}
		m.held[heldKey{user, id}] = struct{}{}
		m.mu.Unlock()
		return id, true, nil
	case errors.Is(err, storage.ErrQuotaExceeded):
		m.srv.Log().Info("stanza not delivered", "from", st.From.String(), "to", user, "why", "offline quota")
		return 0, false, stanza.ResourceConstraint.WithText("the recipient's offline storage is full")
	}
	return 0, false, fmt.Errorf("offline: keeping a message for a hibernating session: %w", err)
}

// Release implements treff.Keeper.
// The messages are deleted a moment later, with others (release); they
// stay held until then, so that no other session is given them.
func (k keeper) Release(ctx context.Context, s *treff.Session, ids []uint64) error {
	k.m.release(s.JID().Bare().String(), slices.Clone(ids))
	return nil
}

// Leave implements treff.Keeper.
func (k keeper) Leave(ctx context.Context, s *treff.Session, ids []uint64) {
	k.m.unhold(s.JID().Bare().String(), ids)
}

func (m *Module) unhold(user string, ids []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.held, heldKey{user, id})
	}
}

func (m *Module) bounce(ctx context.Context, st *treff.Stanza, e error) {
	reply, err := treff.NewStanza(treff.AppendError(nil, st, e))
	if err == nil {
		m.srv.Route(ctx, reply)
	}
}

// presence delivers stored messages on a session's initial presence.
func (m *Module) presence(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || st.Type != "" || !st.To.Equal(jid.JID{}) {
		return false
	}
	sess := m.srv.Session(st.From)
	if sess == nil || sess.Priority() < 0 {
		return false
	}
	first := false
	m.initial.Update(sess, func(seen, _ bool) bool {
		first = !seen
		return true
	})
	if !first {
		return false // not initial, or the session has ended
	}
	m.Deliver(ctx, sess)
	return false
}

// Deliver sends the user's stored messages to s and deletes them.
func (m *Module) Deliver(ctx context.Context, s *treff.Session) {
	user := s.JID().Bare().String()
	msgs, err := m.Store.OfflineMessages(ctx, user)
	if err != nil {
		m.srv.Log().Error("offline read failed", "user", user, "err", err)
		return
	}
	if len(msgs) == 0 {
		return
	}
	// Take the messages no one else holds: a hibernating session's are
	// not the account's yet, and those another session is being given
	// right now (until they are deleted) must not go out twice.
	m.mu.Lock()
	mine := msgs[:0]
	for _, msg := range msgs {
		k := heldKey{user, msg.ID}
		if _, held := m.held[k]; held {
			continue
		}
		if m.held == nil {
			m.held = make(map[heldKey]struct{})
		}
		m.held[k] = struct{}{}
		mine = append(mine, msg)
	}
	m.mu.Unlock()
	ids := make([]uint64, 0, len(mine))
	domain := s.JID().Domainpart()
	for _, msg := range mine {
		if s.Send(withDelay(msg.Stanza, domain, msg.Received)) != nil {
			break
		}
		ids = append(ids, msg.ID)
	}
	if len(ids) > 0 {
		if err := m.Store.DeleteOfflineMessages(ctx, user, ids); err != nil {
			m.srv.Log().Error("offline delete failed", "user", user, "err", err)
		}
	}
	all := make([]uint64, len(mine))
	for i, msg := range mine {
		all[i] = msg.ID
	}
	m.unhold(user, all)
}

// withDelay inserts a XEP-0203 delay element at the end of a message,
// unless the message already carries this server's (it was stored
// before: delivered from offline storage to a session that then
// hibernated), whose time is the original one.
func withDelay(raw []byte, from string, t time.Time) []byte {
	prefix := "<delay xmlns='urn:xmpp:delay' from='" + from + "' stamp='"
	s := string(raw)
	if strings.Contains(s, prefix) {
		return raw
	}
	delay := prefix + t.UTC().Format("2006-01-02T15:04:05.000Z") + "'>Offline storage</delay>"

	out := make([]byte, 0, len(raw)+len(delay)+16)
	if i := strings.LastIndex(s, "</"); i > 0 && strings.HasSuffix(strings.TrimSpace(s), ">") && !strings.HasSuffix(strings.TrimSpace(s), "/>") {
		out = append(out, s[:i]...)
		out = append(out, delay...)
		return append(out, s[i:]...)
	}
	// self-closing <message .../>
	s = strings.TrimSpace(s)
	out = append(out, strings.TrimSuffix(s, "/>")...)
	out = append(out, '>')
	out = append(out, delay...)
	return append(out, "</message>"...)
}
