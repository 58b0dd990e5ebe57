package treff

import (
	"context"
	"errors"
	"slices"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Route delivers a stanza built by a module (see NewStanza) as if it had
// arrived from st.From: to local sessions by the rules of RFC 6121 section
// 8, to a module's service domain, or to another server. Errors go back to
// st.From. Route never blocks on a slow recipient.
func (srv *Server) Route(ctx context.Context, st *Stanza) { srv.route(ctx, st, nil) }

// route delivers st; from is the sending session for stanzas from local
// clients (nil otherwise).
func (srv *Server) route(ctx context.Context, st *Stanza, from *Session) {
	// A client's stanza leaves its account; a module's does if it is
	// from a local account.
	if len(srv.mods.outbound) > 0 && (from != nil || st.From.Localpart() != "" && srv.isHost(st.From.Domainpart())) {
		if srv.stanzaHooks(ctx, srv.mods.outbound, st) {
			return
		}
	}
	to := st.To
	if to.Equal(jid.JID{}) {
		srv.toSelf(ctx, st, from)
		return
	}
	domain := to.Domainpart()
	if e, ok := srv.mods.domains[domain]; ok {
		srv.handleStanza(ctx, &e, st)
		return
	}
	if _, ok := srv.hosts[domain]; !ok {
		if srv.mods.remote != nil {
			srv.handleStanza(ctx, srv.mods.remote, st)
			return
		}
		srv.bounce(ctx, st, errRemoteNotFound)
		return
	}
	if to.Localpart() == "" {
		srv.toHost(ctx, st)
		return
	}
	srv.toAccount(ctx, st)
}

// toSelf handles a stanza without 'to' from a client: it is addressed to
// the sender's own account (RFC 6120 10.3.3).
func (srv *Server) toSelf(ctx context.Context, st *Stanza, from *Session) {
	switch st.Kind {
	case KindIQ:
		if st.Type != "get" && st.Type != "set" {
			return
		}
		if e, ok := srv.mods.accountIQ[st.Payload.Space]; ok {
			srv.callIQ(ctx, e, st)
			return
		}
		if e, ok := srv.mods.iq[st.Payload.Space]; ok {
			srv.callIQ(ctx, e, st)
			return
		}
		srv.bounce(ctx, st, errServiceUnavailable)
	case KindMessage:
		// A message without 'to' is for the sender's bare JID.
		if from != nil {
			st.To = from.jid.Bare()
			srv.toAccount(ctx, st)
		}
	case KindPresence:
		// Broadcast presence; distributing it is the presence module's
		// work (OnClientStanza).
	}
}

// toHost handles stanzas addressed to one of the server's hosts.
func (srv *Server) toHost(ctx context.Context, st *Stanza) {
	if st.Kind != KindIQ {
		// Messages and presence to the server itself go to the
		// OnHostStanza hooks (a local client's went through
		// OnClientStanza before); nothing else is done with them.
		srv.stanzaHooks(ctx, srv.mods.toHost, st)
		return
	}
	if st.Type != "get" && st.Type != "set" {
		srv.iqResponse(st)
		return
	}
	if e, ok := srv.mods.iq[st.Payload.Space]; ok {
		srv.callIQ(ctx, e, st)
		return
	}
	srv.bounce(ctx, st, errServiceUnavailable)
}

func (srv *Server) callIQ(ctx context.Context, e iqEntry, st *Stanza) {
	payload, err := srv.handleIQ(ctx, e, st)
	if err == ErrNoReply {
		return
	}
	if err != nil {
		// A handler's refusal is an answer, not a delivery failure.
		se := srv.stanzaErr(err, e.module)
		srv.logger().Debug("request refused", "module", e.module, "from", st.From.String(), "ns", st.Payload.Space, "why", string(se.Condition))
		srv.answerError(ctx, st, se)
		return
	}
	srv.deliverReply(ctx, st, AppendResult(nil, st, payload))
}

// deliverReply routes a response the server generated for st.
func (srv *Server) deliverReply(ctx context.Context, st *Stanza, raw []byte) {
	reply, err := NewStanza(raw)
	if err != nil {
		srv.logger().Error("bad reply built", "err", err)
		return
	}
	if reply.To.Equal(jid.JID{}) {
		return
	}
	srv.route(ctx, reply, nil)
}

// bounce answers st with a stanza error unless st is itself an error (which
// is never answered, so that errors cannot loop).
func (srv *Server) bounce(ctx context.Context, st *Stanza, e stanza.Error) {
	srv.stats.bounced.Add(1)
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	// Delivery failures are logged as who, whom and why, never content.
	srv.logger().Info("stanza not delivered", "from", st.From.String(), "to", st.To.String(), "kind", kindName(st.Kind), "why", string(e.Condition))
	srv.answerError(ctx, st, e)
}

// answerError sends st's sender the error e (never for an error, so that
// errors cannot loop).
func (srv *Server) answerError(ctx context.Context, st *Stanza, e stanza.Error) {
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	reply := *st
	if reply.To.Equal(jid.JID{}) {
		reply.To, _ = jid.New("", st.From.Domainpart(), "")
	}
	srv.deliverReply(ctx, st, AppendError(nil, &reply, e))
}

// accountExists reports whether a local account exists.
func (srv *Server) accountExists(ctx context.Context, bare jid.JID) bool {
	if srv.Storage == nil {
		return false
	}
	_, err := srv.Storage.Account(ctx, bare.String())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		srv.logger().Error("account lookup failed", "err", err)
	}
	return err == nil
}

// sender is what a routing table entry must implement to receive stanzas.
type sender interface{ Send(raw []byte) error }

// toAccount applies RFC 6121 8.5 to a stanza for a local account.
func (srv *Server) toAccount(ctx context.Context, st *Stanza) {
	bare := st.To.Bare()
	// The table is an interface: a buffer on the stack would escape to
	// the heap at every stanza, so it comes from a pool.
	bp := entryPool.Get().(*[]router.Entry)
	sessions := srv.table.Resources((*bp)[:0], bare)
	defer func() {
		clear(sessions)
		if cap(sessions) <= 64 {
			*bp = sessions[:0]
			entryPool.Put(bp)
		}
	}()
	if len(sessions) == 0 && !srv.accountExists(ctx, bare) {
		// 8.5.1: no such user.
		switch st.Kind {
		case KindIQ:
			if st.Type == "get" || st.Type == "set" {
				srv.bounce(ctx, st, errServiceUnavailable)
			}
		case KindMessage:
			srv.bounce(ctx, st, errServiceUnavailable)
		case KindPresence:
			// RFC 6121 3.1.3 and 4.3.2: a subscription request or probe
			// for an account that does not exist is answered with
			// 'unsubscribed', so the sender's state settles.
			if (st.Type == "subscribe" || st.Type == "probe") && !st.From.Equal(jid.JID{}) {
				raw := append([]byte("<presence type='unsubscribed'"), appendAttr(appendAttr(nil, "from", bare.String()), "to", st.From.Bare().String())...)
				srv.deliverReply(ctx, st, append(raw, "/>"...))
			}
		}
		return
	}
	if srv.stanzaHooks(ctx, srv.mods.toAccount, st) {
		return
	}
	if st.Kind == KindIQ && st.To.Resourcepart() == "" {
		// 8.5.2.1.3 / 10.3.3: the server answers for the account.
		if st.Type != "get" && st.Type != "set" {
			// A response to a request a module sent on the account's
			// behalf (SendIQ from its bare JID); others are dropped.
			srv.iqResponse(st)
			return
		}
		if e, ok := srv.mods.accountIQ[st.Payload.Space]; ok {
			srv.callIQ(ctx, e, st)
			return
		}
		srv.bounce(ctx, st, errServiceUnavailable)
		return
	}
	var out [8]router.Entry
	targets := out[:0]
	var act, fallback router.Action
	if res := st.To.Resourcepart(); res != "" {
		var target router.Entry
		for _, e := range sessions {
			if e.JID().Resourcepart() == res {
				target = e
				break
			}
		}
		act, fallback = router.SelectFull(target, st.Kind, st.Type)
		if act == router.Deliver {
			targets = append(targets, target)
		} else if act == router.Undeliverable {
			// 8.5.3.2.1: fall back to the bare-JID rules.
			targets, act, fallback = router.SelectBare(targets, sessions, st.Kind, st.Type)
		}
	} else {
		targets, act, fallback = router.SelectBare(targets, sessions, st.Kind, st.Type)
	}
	switch act {
	case router.Deliver:
		var keepErr error
		took, closing := false, 0
		for _, e := range targets {
			if s, ok := e.(sender); ok {
				err := s.Send(st.raw)
				if kerr, ok := keptError(err); ok {
					keepErr = kerr
				} else if err == nil {
					took = true
				} else if errors.Is(err, ErrSessionClosed) {
					closing++
				}
			}
		}
		if !took && keepErr == nil && closing == len(targets) && st.Kind == KindMessage {
			// Every target was ending (handing its unacknowledged
			// messages over) between the lookup and the send: the
			// bare-JID rules again without them, so that the message
			// reaches another session or offline storage instead of
			// being lost after its sender was told it was handled. The
			// table is read again: a send may have waited (a message
			// forwarded to another node waits for it to keep it, up to
			// the cluster's dead-after time, when that node died), and
			// the account may have bound a session since; offline
			// storage would hold the message back from it until its
			// next login.
			var lout [8]router.Entry
			live := slices.DeleteFunc(srv.table.Resources(nil, bare), func(e router.Entry) bool {
				return slices.Contains(targets, e)
			})
			targets, act, fallback = router.SelectBare(lout[:0], live, st.Kind, st.Type)
			if act == router.Deliver {
				took := false
				for _, e := range targets {
					if s, ok := e.(sender); ok && s.Send(st.raw) == nil {
						took = true
					}
				}
				if !took {
					// These failed too: as if there were none (offline
					// storage).
					targets, act, fallback = router.SelectBare(lout[:0], nil, st.Kind, st.Type)
				}
			}
			switch act {
			case router.Deliver:
				srv.stats.delivered.Add(1)
			case router.Undeliverable:
				if srv.stanzaHooks(ctx, srv.mods.undeliver, st) {
					srv.stats.offline.Add(1)
				} else if fallback == router.ErrorReply {
					srv.bounce(ctx, st, errServiceUnavailable)
				}
			case router.ErrorReply:
				srv.bounce(ctx, st, errServiceUnavailable)
			}
			return
		}
		if keepErr != nil && !took {
			// The only sessions are hibernating and their messages could
			// not be stored: the sender learns it rather than getting an
			// acknowledgement for a message a crash would lose.
			e, ok := stanza.FromError(keepErr)
			if !ok {
				e = stanza.Error{Condition: stanza.InternalServerError}
			}
			srv.bounce(ctx, st, e)
			return
		}
		if took {
			srv.stats.delivered.Add(1)
		}
		if len(srv.mods.delivered) > 0 && st.Kind != KindIQ {
			// The hooks get the slice (so it would escape to the heap
			// at every delivery): it comes from a pool, and DeliveredHook
			// says it is valid during the call only.
			gp := deliveredPool.Get().(*[]*Session)
			got := (*gp)[:0]
			for _, e := range targets {
				if s, ok := e.(*Session); ok {
					got = append(got, s)
				}
			}
			if len(got) > 0 {
				srv.deliveredHooks(ctx, srv.mods.delivered, st, got)
			}
			clear(got)
			if cap(got) <= 64 {
				*gp = got[:0]
				deliveredPool.Put(gp)
			}
		}
	case router.Undeliverable:
		if srv.stanzaHooks(ctx, srv.mods.undeliver, st) {
			srv.stats.offline.Add(1)
			return
		}
		if fallback == router.ErrorReply {
			srv.bounce(ctx, st, errServiceUnavailable)
		}
	case router.ErrorReply:
		srv.bounce(ctx, st, errServiceUnavailable)
	}
}

// entryPool holds the lists of an account's sessions toAccount looks up.
var entryPool = sync.Pool{New: func() any { s := make([]router.Entry, 0, 8); return &s }}

// deliveredPool holds the session lists handed to DeliveredHooks.
var deliveredPool = sync.Pool{New: func() any { s := make([]*Session, 0, 8); return &s }}

// pendingIQ is a request sent with SendIQ awaiting its response.
type pendingIQ struct {
	to jid.JID
	ch chan *Stanza
}

// ErrNotIQRequest is returned by SendIQ for a stanza that is not an IQ get
// or set with an id and a 'to'.
var ErrNotIQRequest = errors.New("treff: not an IQ request")

// SendIQ routes an IQ get or set that a module built (with 'from' set to
// one of the server's hosts, or to a local account's bare JID for a
// request made on the user's behalf such as a push notification, so that
// the response comes back to the server) and waits for the response,
// which is of type result or error. The id must be unique among the
// requests waiting (a random one).
// An unreachable addressee yields the error response the router
// generates. It returns ctx's error if ctx ends first.
func (srv *Server) SendIQ(ctx context.Context, st *Stanza) (*Stanza, error) {
	if st.Kind != KindIQ || (st.Type != "get" && st.Type != "set") || st.ID == "" || st.To.Equal(jid.JID{}) {
		return nil, ErrNotIQRequest
	}
	p := &pendingIQ{to: st.To, ch: make(chan *Stanza, 1)}
	srv.pendingMu.Lock()
	if srv.pending == nil {
		srv.pending = make(map[string]*pendingIQ)
	}
	srv.pending[st.ID] = p
	srv.pendingMu.Unlock()
	defer func() {
		srv.pendingMu.Lock()
		if srv.pending[st.ID] == p {
			delete(srv.pending, st.ID)
		}
		srv.pendingMu.Unlock()
	}()
	srv.Route(ctx, st)
	select {
	case r := <-p.ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// iqResponse hands a result or error addressed to a host or to an
// account's bare JID to the SendIQ call waiting for it; other responses
// are dropped.
func (srv *Server) iqResponse(st *Stanza) {
	srv.pendingMu.Lock()
	p := srv.pending[st.ID]
	if p != nil && st.From.Equal(p.to) {
		delete(srv.pending, st.ID)
	} else {
		p = nil
	}
	srv.pendingMu.Unlock()
	if p != nil {
		p.ch <- st
	}
}

func kindName(k Kind) string {
	switch k {
	case KindMessage:
		return "message"
	case KindPresence:
		return "presence"
	}
	return "iq"
}
