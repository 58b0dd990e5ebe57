package muc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Roles of occupants (XEP-0045 section 5.1).
const (
	roleModerator   = "moderator"
	roleParticipant = "participant"
	roleVisitor     = "visitor"
)

// occupant is one nickname in the room, held by one user (bare JID)
// from one session or several: XEP-0045 7.2.9 lets a service admit a
// second session of the same user under the same nickname, and the
// other occupants see one occupant. Its presence is that of the session
// that entered or changed its presence last, whose JID and content are
// in real and inner.
type occupant struct {
	nick     string
	real     jid.JID // full JID of the session whose presence the others see
	role     string
	inner    string     // that session's presence content, without the MUC join element
	sessions []*session // every session under the nickname, real's last
	id       string     // XEP-0421 occupant-id
}

// session is one of an occupant's sessions.
type session struct {
	real  jid.JID // full JID
	inner string  // its presence content
}

// setSession makes the session with the given full JID (added if new)
// the one whose presence the others see, with the content inner; it
// reports whether the presence content the others see changed (the
// session's full JID alone is not worth a presence to everyone).
func (o *occupant) setSession(real jid.JID, inner string) bool {
	o.sessions = slices.DeleteFunc(o.sessions, func(s *session) bool { return s.real.Equal(real) })
	o.sessions = append(o.sessions, &session{real: real, inner: inner})
	changed := o.inner != inner
	o.real, o.inner = real, inner
	return changed
}

// dropSession takes a session out of an occupant that keeps others; it
// reports whether what the others see changed.
func (o *occupant) dropSession(real jid.JID) bool {
	o.sessions = slices.DeleteFunc(o.sessions, func(s *session) bool { return s.real.Equal(real) })
	last := o.sessions[len(o.sessions)-1]
	changed := o.inner != last.inner
	o.real, o.inner = last.real, last.inner
	return changed
}

type historyEntry struct {
	nick  string
	inner string
	at    time.Time
	sid   string // the stanza-id the room gave it, once archived
}

// recentHistory is the history as stored when the service stops. r.mu is
// held.
func (r *room) recentHistory() []storage.RoomMessage {
	out := make([]storage.RoomMessage, 0, len(r.history))
	for _, e := range r.history {
		out = append(out, storage.RoomMessage{Nick: e.nick, Content: e.inner, At: e.at.UTC()})
	}
	return out
}

// room is a live room.
//
// Locking. The module's mutex (Module.mu) guards its maps of rooms; a
// room's mutex (room.mu) guards the room's state. Neither is held while
// calling storage or routing a stanza, so a slow store or a slow
// recipient holds up only the stanzas that wait for it, never another
// room. Where both are taken, Module.mu comes first.
//
// Whatever a room decides under its lock that must go out (stanzas to
// route, the room to store, a message to archive) it appends to its
// queue, out, in the same critical section as the change it reports.
// After unlocking, the goroutine calls run, which carries the queue out
// in order, one goroutine at a time: the one that finds the room idle
// takes the queue, and the others leave their steps to it. Every
// occupant thus hears the room's events in the order they happened, the
// archive's order is the broadcast's, an answer that acknowledges a
// change is routed after the change is stored, and the last store of a
// room is of its latest state. Functions that run with room.mu held
// take no context: they do no I/O.
type room struct {
	m       *Module
	jid     jid.JID
	mu      sync.Mutex
	conf    storage.Room
	locked  bool // new room awaiting its owner's configuration
	byNick  map[string]*occupant
	byReal  map[string]*occupant // by full JID
	order   []*occupant          // in order of arrival
	history []*historyEntry
	pending map[string]pendingIQ // forwarded IQs by the id sent on
	archive int8                 // archiving: 0 not read yet, 1 on, -1 off
	kept    bool                 // temporary, but stored over a restart: its end deletes it
	out     []step               // to carry out after the lock, oldest first
	queued  int                  // bytes of the steps in out and being carried out
	running bool                 // a goroutine is carrying out out
	mod     modState             // retraction and avatar (moderation.go, avatar.go)

	// histSave is the pending store of the history (Module.SaveHistory).
	histSave *time.Timer

	// gone is set (under mu) when the room ends: destroyed, or a
	// temporary room left by its last occupant. It answers as if it did
	// not exist until its last step has run, which forgets it and closes
	// ended.
	gone  atomic.Bool
	ended chan struct{}
}

// maxQueued is how many steps may wait in a room's queue (behind a slow
// store, say) before the room turns away new messages and joins with a
// wait error, so that the queue stays bounded; Module.MaxQueueBytes
// bounds their bytes likewise.
const maxQueued = 20000

// stepOverhead is what a step counts against Module.MaxQueueBytes beyond
// the stanza bytes it holds.
const stepOverhead = 64

// busy reports whether the room's queue is full; r.mu is not held. The
// refusal is sent by the caller, outside the queue.
func (r *room) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.out) >= maxQueued || r.queued >= r.m.maxQueueBytes()
}

var errBusy = stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint, Text: "the room is busy; try again"}

// step is one thing a room does outside its lock: route raw or st, or
// call do.
type step struct {
	raw  []byte
	st   *treff.Stanza
	do   func(ctx context.Context)
	size int // counted in room.queued
}

// queue appends s to the room's queue. r.mu is held.
func (r *room) queue(s step) {
	s.size += stepOverhead
	r.out = append(r.out, s)
	r.queued += s.size
}

// newRoom makes a live room of a new or stored configuration: the stored
// history goes to the room's history, and a room without a secret for
// its occupant-ids gets one.
func newRoom(m *Module, j jid.JID, conf storage.Room) *room {
	if conf.Affiliations == nil {
		conf.Affiliations = map[string]storage.Affiliation{}
	}
	if len(conf.OccupantIDKey) == 0 {
		conf.OccupantIDKey = make([]byte, 32)
		rand.Read(conf.OccupantIDKey)
	}
	r := &room{m: m, jid: j, conf: conf, byNick: map[string]*occupant{}, byReal: map[string]*occupant{}, ended: make(chan struct{})}
	for _, h := range conf.History {
		r.history = append(r.history, &historyEntry{nick: h.Nick, inner: h.Content, at: h.At})
	}
	r.conf.History, r.conf.KeepUntil = nil, time.Time{}
	return r
}

// send queues raw for routing. r.mu is held.
func (r *room) send(raw []byte) { r.queue(step{raw: raw, size: len(raw)}) }

// route queues st for routing. r.mu is held.
func (r *room) route(st *treff.Stanza) { r.queue(step{st: st, size: len(st.Raw())}) }

// later queues do. r.mu is held.
func (r *room) later(do func(ctx context.Context)) { r.queue(step{do: do}) }

// laterSized queues do, which holds about size bytes. r.mu is held.
func (r *room) laterSized(size int, do func(ctx context.Context)) {
	r.queue(step{do: do, size: size})
}

// fail queues an error answer to st (none to an error). r.mu is held.
func (r *room) fail(st *treff.Stanza, e error) { r.send(errorReply(st, e)) }

// failJoin queues the refusal of a join. r.mu is held.
func (r *room) failJoin(st *treff.Stanza, e error) { r.send(joinErrorReply(st, e)) }

// unlock releases r.mu and carries out what the room queued: the way to
// leave every critical section that may have queued something.
func (r *room) unlock(ctx context.Context) {
	r.mu.Unlock()
	r.run(ctx)
}

// run carries out the room's queue unless another goroutine is at it (it
// then carries out what was queued here too). r.mu is not held.
func (r *room) run(ctx context.Context) {
	// Also the others' steps: the sender's context must not end them.
	ctx = context.WithoutCancel(ctx)
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return
	}
	r.running = true
	defer func() {
		if p := recover(); p != nil {
			r.mu.Lock()
			r.running = false
			r.mu.Unlock()
			panic(p)
		}
	}()
	for len(r.out) > 0 {
		steps := r.out
		r.out = nil
		r.mu.Unlock()
		done := 0
		for _, s := range steps {
			switch {
			case s.do != nil:
				s.do(ctx)
			case s.st != nil:
				r.m.srv.Route(ctx, s.st)
			case s.raw != nil:
				r.m.send(ctx, s.raw)
			}
			done += s.size
		}
		r.mu.Lock()
		r.queued -= done
	}
	r.running = false
	r.mu.Unlock()
}

// end marks the room gone and queues its end: its archive deleted, and
// with fromStore its stored state, before it is forgotten. r.mu is held.
func (r *room) end(fromStore bool) {
	if r.gone.Swap(true) {
		return
	}
	r.later(func(ctx context.Context) { r.m.forget(ctx, r, fromStore) })
}

// snapshot returns a copy of the room's configuration and whether it is
// locked.
func (r *room) snapshot() (storage.Room, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.confCopy(), r.locked
}

// confCopy is the room's configuration, sharing nothing with the room.
// r.mu is held.
func (r *room) confCopy() storage.Room {
	c := r.conf
	c.Affiliations = maps.Clone(c.Affiliations)
	return c
}

func (r *room) affiliation(user jid.JID) storage.Affiliation {
	return r.conf.Affiliations[user.Bare().String()]
}

func (r *room) nickJID(nick string) jid.JID {
	j, _ := jid.New(r.jid.Localpart(), r.jid.Domainpart(), nick)
	return j
}

// save queues the storing of a persistent room's current state. r.mu is
// held.
func (r *room) save() {
	if !r.conf.Persistent || r.m.Store == nil || r.gone.Load() {
		return
	}
	conf := r.confCopy()
	conf.History = r.recentHistory() // a crash keeps what was stored last
	r.later(func(ctx context.Context) {
		if err := r.m.Store.PutRoom(ctx, conf); err != nil {
			r.m.srv.Log().Error("muc: storing a room failed", "room", r.jid.String(), "err", err)
		}
	})
}

// presenceOf builds o's presence as to sees it, for to's session dest,
// with the given status codes; extra goes inside <x/> after the item.
func (r *room) presenceOf(o *occupant, to *occupant, dest jid.JID, typ string, itemExtra string, codes ...int) []byte {
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, r.nickJID(o.nick).String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, dest.String())
	if typ != "" {
		b = append(b, "' type='"...)
		b = append(b, typ...)
	}
	b = append(b, "'>"...)
	b = append(b, o.inner...)
	b = appendOccupantID(b, o.id)
	b = append(b, "<x xmlns='"+NSUser+"'><item affiliation='"...)
	aff := string(r.affiliation(o.real))
	if aff == "" {
		aff = "none"
	}
	b = append(b, aff...)
	if r.conf.NonAnonymous || to.role == roleModerator || to == o {
		b = append(b, "' jid='"...)
		b = treff.AppendEscaped(b, o.real.String())
	}
	role := o.role
	if typ == "unavailable" {
		role = "none"
	}
	b = append(b, "' role='"...)
	b = append(b, role...)
	b = append(b, "'"...)
	if itemExtra != "" {
		b = append(b, itemExtra...)
	} else {
		b = append(b, "/>"...)
	}
	for _, c := range codes {
		b = append(b, "<status code='"...)
		b = strconv.AppendInt(b, int64(c), 10)
		b = append(b, "'/>"...)
	}
	return append(b, "</x></presence>"...)
}

// broadcastPresence queues o's presence to every session of every
// occupant; o's own sessions get selfCodes (110 first), the others
// othersCodes. r.mu is held.
func (r *room) broadcastPresence(o *occupant, typ, itemExtra string, othersCodes, selfCodes []int) {
	r.broadcastPresenceExcept(o, jid.JID{}, typ, itemExtra, othersCodes, selfCodes)
}

// broadcastPresenceExcept is broadcastPresence but for the session skip.
// r.mu is held.
func (r *room) broadcastPresenceExcept(o *occupant, skip jid.JID, typ, itemExtra string, othersCodes, selfCodes []int) {
	for _, to := range r.order {
		codes := othersCodes
		if to == o {
			codes = selfCodes
		}
		for _, s := range to.sessions {
			if !s.real.Equal(skip) {
				r.send(r.presenceOf(o, to, s.real, typ, itemExtra, codes...))
			}
		}
	}
	if typ == "unavailable" && r.byNick[o.nick] != o {
		// o has left the lists already; its sessions still hear of its
		// exit.
		for _, s := range o.sessions {
			r.send(r.presenceOf(o, o, s.real, typ, itemExtra, selfCodes...))
		}
	}
}

// toSessions queues build's stanza for each session of to. r.mu is held.
func (r *room) toSessions(to *occupant, build func(dest jid.JID) []byte) {
	for _, s := range to.sessions {
		r.send(build(s.real))
	}
}

// enter handles available presence to room/nick. It reports false, having
// done nothing, if the room has ended: the caller looks for it anew.
func (r *room) enter(ctx context.Context, st *treff.Stanza, nick string, created bool) bool {
	if r.busy() {
		r.m.failJoin(ctx, st, errBusy)
		return true
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	if r.gone.Load() {
		return false
	}
	inner, join := stripJoin(st.Inner())
	if o := r.byReal[st.From.String()]; o != nil {
		if o.nick == nick {
			o.setSession(st.From, inner)
			r.broadcastPresence(o, "", "", nil, r.selfCodes(false))
			return true
		}
		r.changeNick(st, o, nick, inner)
		return true
	}
	// Another session of the occupant's user under the same nickname
	// joins that occupant (XEP-0045 7.2.9).
	same := r.byNick[nick]
	if same != nil && !same.real.Bare().Equal(st.From.Bare()) {
		same = nil
	}
	aff := r.affiliation(st.From)
	fail := func(cond stanza.Condition, text string) { r.failJoin(st, stanza.Error{Condition: cond, Text: text}) }
	switch {
	case r.locked && !created && aff != storage.AffOwner:
		fail("item-not-found", "this room is being set up; try again in a moment")
		return true
	case aff == storage.AffOutcast:
		fail("forbidden", "you are banned from this room")
		return true
	case aff == "" && r.conf.Public && r.m.Blocklist != nil && r.m.Blocklist.Blocked(st.From):
		// A real-time block list (MUC RTBL) or the server's own list
		// keeps known spammers out of public rooms; a room's members
		// and owners decide for themselves.
		fail("forbidden", "you are banned from this service's public rooms")
		return true
	case r.conf.MembersOnly && aff == "":
		fail("registration-required", "this room is for members only")
		return true
	case r.conf.Password != "" && join.Password != r.conf.Password && aff != storage.AffOwner:
		fail("not-authorized", "this room needs a password")
		return true
	case same == nil && len(r.order) >= or(r.conf.MaxOccupants, r.m.maxOccupants()) && aff != storage.AffOwner && aff != storage.AffAdmin:
		r.failJoin(st, stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable, Text: "this room is full"})
		return true
	}
	if same != nil {
		r.addSession(same, st.From, inner, join)
		return true
	}
	if r.byNick[nick] != nil {
		fail("conflict", "this nickname is in use in this room")
		return true
	}
	o := &occupant{nick: nick, role: roleParticipant, id: r.occupantID(st.From)}
	o.setSession(st.From, inner)
	switch {
	case aff == storage.AffOwner || aff == storage.AffAdmin:
		o.role = roleModerator
	case r.conf.Moderated && aff == "":
		o.role = roleVisitor
	}
	// The others' presence first, then the newcomer's to everyone.
	for _, other := range r.order {
		r.send(r.presenceOf(other, o, st.From, "", ""))
	}
	r.byNick[nick], r.byReal[st.From.String()] = o, o
	r.order = append(r.order, o)
	r.broadcastPresence(o, "", "", nil, r.selfCodes(created))
	r.sendHistory(st.From, join)
	r.sendSubject(st.From)
	return true
}

// addSession adds a session of o's user to o: the session gets the room's
// state as any newcomer does (the others' presence, its own, the history
// and the subject), and the others hear of o only if what they see of it
// changes. r.mu is held.
func (r *room) addSession(o *occupant, real jid.JID, inner string, join joinElement) {
	for _, other := range r.order {
		if other != o {
			r.send(r.presenceOf(other, o, real, "", ""))
		}
	}
	changed := o.setSession(real, inner)
	r.byReal[real.String()] = o
	if changed {
		r.broadcastPresenceExcept(o, real, "", "", nil, r.selfCodes(false))
	}
	r.send(r.presenceOf(o, o, real, "", "", r.selfCodes(false)...))
	r.sendHistory(real, join)
	r.sendSubject(real)
}

// sendSubject queues the subject for a session that entered: it comes
// last, always (XEP-0045 7.2.15). r.mu is held.
func (r *room) sendSubject(to jid.JID) {
	b := []byte("<message type='groupchat' from='")
	from := r.jid
	if r.conf.SubjectBy != "" {
		from = r.nickJID(r.conf.SubjectBy)
	}
	b = treff.AppendEscaped(b, from.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to.String())
	b = append(b, "'><subject>"...)
	b = treff.AppendEscaped(b, r.conf.Subject)
	r.send(append(b, "</subject></message>"...))
}

// selfCodes are the status codes of an occupant's own presence.
func (r *room) selfCodes(created bool) []int {
	codes := []int{110}
	if r.conf.NonAnonymous {
		codes = append(codes, 100)
	}
	if created {
		codes = append(codes, 201)
	}
	return codes
}

// changeNick: r.mu is held.
func (r *room) changeNick(st *treff.Stanza, o *occupant, nick, inner string) {
	if r.byNick[nick] != nil {
		r.failJoin(st, stanza.Conflict.WithText("this nickname is in use in this room"))
		return
	}
	// Unavailable under the old nickname with 303 and the new one, then
	// available under the new (XEP-0045 7.6). All of the occupant's
	// sessions change nickname together.
	extra := " nick='" + string(treff.AppendEscaped(nil, nick)) + "'/>"
	for _, to := range r.order {
		codes := []int{303}
		if to == o {
			codes = append([]int{110}, codes...)
		}
		for _, s := range to.sessions {
			r.send(r.presenceOf(o, to, s.real, "unavailable", extra, codes...))
		}
	}
	delete(r.byNick, o.nick)
	o.nick = nick
	o.setSession(st.From, inner)
	r.byNick[nick] = o
	r.broadcastPresence(o, "", "", nil, r.selfCodes(false))
}

// leave takes the occupant with the given full JID out of the room.
// status is the <status/> element of the exit presence, if any; gone says
// the session ended.
func (r *room) leave(ctx context.Context, real jid.JID, status string, gone bool) {
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[real.String()]
	if o == nil {
		return
	}
	delete(r.byReal, real.String())
	if len(o.sessions) > 1 {
		// The occupant stays with its other sessions: only this one
		// hears of its exit, and the others of a change of presence.
		left := *o
		left.real, left.inner = real, status
		if gone {
			left.inner = ""
		}
		r.send(r.presenceOf(&left, &left, real, "unavailable", "", 110))
		if o.dropSession(real) {
			r.broadcastPresence(o, "", "", nil, r.selfCodes(false))
		}
		return
	}
	delete(r.byNick, o.nick)
	for i, x := range r.order {
		if x == o {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	o.inner = status
	if gone {
		o.inner = ""
	}
	r.broadcastPresence(o, "unavailable", "", nil, []int{110})
	if len(r.order) == 0 && (!r.conf.Persistent || r.locked) {
		// A temporary room ends with its last occupant (also one kept
		// over a restart, whose stored state goes too).
		r.end(r.kept)
	}
}

// sendHistory queues the discussion history for a session that entered,
// as its join element asked (XEP-0045 7.2.14). r.mu is held. The entries
// are read when the step runs: messages queued before it have their
// stanza-ids by then.
func (r *room) sendHistory(dest jid.JID, join joinElement) {
	h := r.history
	if join.MaxStanzas >= 0 && join.MaxStanzas < len(h) {
		h = h[len(h)-join.MaxStanzas:]
	}
	if len(h) == 0 {
		return
	}
	h = slices.Clone(h)
	r.later(func(ctx context.Context) {
		var out [][]byte
		r.mu.Lock()
		chars := 0
		start := 0
		for i := len(h) - 1; i >= 0; i-- {
			if !join.Since.IsZero() && h[i].at.Before(join.Since) ||
				join.Seconds >= 0 && time.Since(h[i].at) > time.Duration(join.Seconds)*time.Second {
				start = i + 1
				break
			}
			chars += len(h[i].inner) + 100
			if join.MaxChars >= 0 && chars > join.MaxChars {
				start = i + 1
				break
			}
		}
		for _, e := range h[start:] {
			b := []byte("<message type='groupchat' from='")
			b = treff.AppendEscaped(b, r.nickJID(e.nick).String())
			b = append(b, "' to='"...)
			b = treff.AppendEscaped(b, dest.String())
			b = append(b, "'>"...)
			b = append(b, e.inner...)
			b = append(b, "<delay xmlns='"+nsDelay+"' from='"...)
			b = treff.AppendEscaped(b, r.jid.String())
			b = append(b, "' stamp='"...)
			b = e.at.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
			out = append(out, append(b, "'/></message>"...))
		}
		r.mu.Unlock()
		for _, b := range out {
			r.m.send(ctx, b)
		}
	})
}

// groupchat handles a message to the room.
func (r *room) groupchat(ctx context.Context, st *treff.Stanza) {
	if r.busy() {
		r.m.fail(ctx, st, errBusy)
		return
	}
	r.loadArchiving(ctx)
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[st.From.String()]
	fail := func(cond stanza.Condition, text string) { r.fail(st, stanza.Error{Condition: cond, Text: text}) }
	switch {
	case o == nil:
		fail("not-acceptable", "you are not in this room")
		return
	case st.Type != "groupchat":
		fail("bad-request", "messages to a room are of type groupchat")
		return
	case o.role == roleVisitor:
		fail("forbidden", "visitors cannot speak in a moderated room")
		return
	}
	inner := st.Inner()
	subject, isSubject := subjectOf(inner)
	isSubject = isSubject && !strings.Contains(inner, "<body")
	if isSubject && o.role != roleModerator && !r.conf.OccupantsChangeSubject {
		fail("forbidden", "only moderators may change the subject")
		return
	}
	out := r.prepareGroupchat(st, o)
	var e *historyEntry
	if isSubject {
		r.conf.Subject, r.conf.SubjectBy = subject, o.nick
		r.save()
	} else if mam.Archivable(out.Raw()) {
		// The history keeps what clients show: a body (or an encrypted
		// payload), or what a <store/> hint asks to keep; not chat
		// states, not what <no-store/> or <no-permanent-store/> marks.
		e = &historyEntry{nick: o.nick, inner: out.Inner(), at: time.Now()}
		r.history = append(r.history, e)
		if max := or(r.conf.MaxHistory, r.m.maxHistory()); len(r.history) > max {
			r.history = append(r.history[:0], r.history[len(r.history)-max:]...)
		}
		r.historyAdded()
	}
	from := r.nickJID(o.nick)
	if !r.archiving() || !(isSubject || mam.Archivable(out.Raw())) {
		for _, to := range r.order {
			for _, s := range to.sessions {
				r.route(out.WithAddresses(from, s.real))
			}
		}
		return
	}
	// Archived first, then sent with the archive's id: both in the
	// room's order.
	var to []jid.JID
	for _, o := range r.order {
		for _, s := range o.sessions {
			to = append(to, s.real)
		}
	}
	nick, author := o.nick, o.real.Bare().String()
	r.laterSized(len(out.Raw())+stepOverhead*len(to), func(ctx context.Context) {
		sid, err := r.archiveGroupchat(ctx, out, nick)
		if err != nil && !isSubject {
			// Not archived, so not sent: the sender hears why.
			r.mu.Lock()
			if i := slices.Index(r.history, e); i >= 0 {
				r.history = slices.Delete(r.history, i, i+1)
			}
			r.mu.Unlock()
			r.m.fail(ctx, st, mam.ArchiveError(err))
			return
		}
		if sid != "" {
			r.mu.Lock()
			r.noteAuthor(sid, author)
			if e != nil {
				e.inner, e.sid = out.Inner(), sid
			}
			r.mu.Unlock()
		}
		if sid != "" && !isSubject {
			r.authorRetraction(ctx, out, author)
		}
		for _, j := range to {
			r.m.srv.Route(ctx, out.WithAddresses(from, j))
		}
	})
}

// private forwards a private message between occupants (XEP-0045 7.5).
func (r *room) private(ctx context.Context, st *treff.Stanza) {
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[st.From.String()]
	fail := func(cond stanza.Condition, text string) { r.fail(st, stanza.Error{Condition: cond, Text: text}) }
	switch {
	case o == nil:
		fail("not-acceptable", "you are not in this room")
		return
	case st.Type == "groupchat":
		fail("bad-request", "private messages are not of type groupchat")
		return
	}
	to := r.byNick[st.To.Resourcepart()]
	if to == nil {
		fail("item-not-found", "nobody by that nickname is in this room")
		return
	}
	// To every session of the occupant, with the sender's occupant-id
	// (XEP-0421) instead of any the sender put in.
	raw, _ := withoutOccupantIDs(st)
	raw = withUserX(raw)
	if i := strings.LastIndex(string(raw), "</"); i >= 0 {
		raw = []byte(string(raw[:i]) + string(appendOccupantID(nil, o.id)) + string(raw[i:]))
	}
	pm, err := treff.NewStanza(raw)
	if err != nil {
		fail("bad-request", "this message cannot be forwarded")
		return
	}
	for _, s := range to.sessions {
		r.send(pm.WithAddresses(r.nickJID(o.nick), s.real).Raw())
	}
}

// withUserX adds an empty muc#user element to a message (XEP-0045 7.5).
func withUserX(raw []byte) []byte {
	x := "<x xmlns='" + NSUser + "'/>"
	s := string(raw)
	if strings.HasSuffix(s, "/>") && !strings.HasSuffix(s, "</message>") {
		return []byte(s[:len(s)-2] + ">" + x + "</message>")
	}
	i := strings.LastIndex(s, "</")
	return []byte(s[:i] + x + s[i:])
}

// occupantIQ answers IQs to room/nick: a ping to one's own occupant JID
// is the self-ping of XEP-0410; other requests go on to the occupant's
// real JID from the sender's occupant JID, with a fresh id, and the
// answer comes back the same way (XEP-0045 7.7, used for vCards).
func (r *room) occupantIQ(ctx context.Context, st *treff.Stanza) {
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[st.From.String()]
	if o == nil {
		r.fail(st, stanza.NotAcceptable.WithText("you are not in this room"))
		return
	}
	if st.Payload.Space == "urn:xmpp:ping" && o.nick == st.To.Resourcepart() {
		r.send(treff.AppendResult(nil, st, nil))
		return
	}
	to := r.byNick[st.To.Resourcepart()]
	if to == nil {
		r.fail(st, stanza.ItemNotFound.WithText("nobody by that nickname is in this room"))
		return
	}
	now := time.Now()
	if r.pending == nil {
		r.pending = map[string]pendingIQ{}
	}
	for id, p := range r.pending {
		if now.Sub(p.at) > time.Minute {
			delete(r.pending, id)
		}
	}
	if len(r.pending) >= 1000 {
		r.fail(st, stanza.ResourceConstraint.WithText("too many requests in flight"))
		return
	}
	id := newID()
	r.pending[id] = pendingIQ{from: st.From, id: st.ID, nick: to.nick, at: now}
	fwd := st.WithAddresses(r.nickJID(o.nick), to.real)
	r.send(replaceID(fwd.Raw(), st.ID, id))
}

// iqResponse takes an answer to a forwarded request back to its sender.
func (r *room) iqResponse(ctx context.Context, st *treff.Stanza) {
	r.mu.Lock()
	defer r.unlock(ctx)
	p, ok := r.pending[st.ID]
	if !ok {
		return
	}
	delete(r.pending, st.ID)
	back := st.WithAddresses(r.nickJID(p.nick), p.from)
	r.send(replaceID(back.Raw(), st.ID, p.id))
}

type pendingIQ struct {
	from jid.JID // the requester's real JID
	id   string  // its id
	nick string  // the occupant asked
	at   time.Time
}

// replaceID swaps the id attribute of a stanza's start tag.
func replaceID(raw []byte, old, new string) []byte {
	end := strings.IndexByte(string(raw), '>')
	head := string(raw[:end])
	for _, q := range []string{"'", "\""} {
		attr := " id=" + q + string(treff.AppendEscaped(nil, old)) + q
		if i := strings.Index(head, attr); i >= 0 {
			return []byte(head[:i] + " id='" + string(treff.AppendEscaped(nil, new)) + "'" + head[i+len(attr):] + string(raw[end:]))
		}
	}
	return raw
}

func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return "muc-" + base64.RawURLEncoding.EncodeToString(b[:])
}

// discoInfo answers disco#info about the room (XEP-0045 6.4).
func (r *room) discoInfo(ctx context.Context, st *treff.Stanza) {
	r.loadArchiving(ctx)
	r.loadAvatar(ctx)
	r.mu.Lock()
	defer r.unlock(ctx)
	conf, archiving := r.conf, r.archiving()
	pick := func(c bool, yes, no string) string {
		if c {
			return yes
		}
		return no
	}
	b := []byte("<query xmlns='" + nsDiscoInfo + "'><identity category='conference' type='text' name='")
	name := conf.Name
	if name == "" {
		name = r.jid.Localpart()
	}
	b = treff.AppendEscaped(b, name)
	b = append(b, "'/>"...)
	for _, f := range []string{NS, nsDiscoInfo, "urn:xmpp:ping",
		pick(conf.Public, "muc_public", "muc_hidden"), pick(conf.MembersOnly, "muc_membersonly", "muc_open"),
		pick(conf.Moderated, "muc_moderated", "muc_unmoderated"), pick(conf.NonAnonymous, "muc_nonanonymous", "muc_semianonymous"),
		pick(conf.Password != "", "muc_passwordprotected", "muc_unsecured"), pick(conf.Persistent, "muc_persistent", "muc_temporary")} {
		b = append(b, "<feature var='"+f+"'/>"...)
	}
	if archiving {
		for _, f := range archiveFeatures {
			b = append(b, "<feature var='"+f+"'/>"...)
		}
	}
	for _, f := range r.modFeatures(archiving) {
		b = append(b, "<feature var='"+f+"'/>"...)
	}
	b = append(b, "<feature var='"+NSOccupantID+"'/>"...)
	info := r.roomInfo(name)
	info.Fields = append(info.Fields, r.avatarFields()...)
	b = info.Append(b, "result")
	r.send(treff.AppendResult(nil, st, append(b, "</query>"...)))
}

// joinElement is what a client says in <x xmlns='http://jabber.org/protocol/muc'/>.
type joinElement struct {
	Password   string
	MaxStanzas int // -1: not given
	MaxChars   int
	Seconds    int
	Since      time.Time
}

// stripJoin returns a presence's content without the MUC join element
// and the occupant-ids the client put in, and what the join element said.
func stripJoin(inner string) (string, joinElement) {
	j := joinElement{MaxStanzas: -1, MaxChars: -1, Seconds: -1}
	d := xml.NewDecoder(strings.NewReader(inner))
	var keep strings.Builder
	prev := int64(0)
	for {
		start := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space == NSOccupantID {
			// The room puts in its own (XEP-0421).
			keep.WriteString(inner[prev:start])
			d.Skip()
			prev = d.InputOffset()
			continue
		}
		if se.Name.Space != NS || se.Name.Local != "x" {
			d.Skip()
			continue
		}
		var x struct {
			Password string `xml:"password"`
			History  *struct {
				MaxStanzas string `xml:"maxstanzas,attr"`
				MaxChars   string `xml:"maxchars,attr"`
				Seconds    string `xml:"seconds,attr"`
				Since      string `xml:"since,attr"`
			} `xml:"history"`
		}
		if d.DecodeElement(&x, &se) != nil {
			break
		}
		keep.WriteString(inner[prev:start])
		prev = d.InputOffset()
		j.Password = x.Password
		if h := x.History; h != nil {
			j.MaxStanzas, j.MaxChars, j.Seconds = atoi(h.MaxStanzas, -1), atoi(h.MaxChars, -1), atoi(h.Seconds, -1)
			if t, err := time.Parse(time.RFC3339, h.Since); err == nil {
				j.Since = t
			}
		}
	}
	keep.WriteString(inner[prev:])
	return keep.String(), j
}

func atoi(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return def
	}
	return n
}

// subjectOf returns the text of a <subject/> in a message's content.
func subjectOf(inner string) (string, bool) {
	d := xml.NewDecoder(strings.NewReader("<m>" + inner + "</m>"))
	var m struct {
		Subject *string `xml:"subject"`
	}
	if err := d.Decode(&m); err != nil || m.Subject == nil {
		return "", false
	}
	return *m.Subject, true
}
