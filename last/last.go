// Package last implements XEP-0012: Last Activity for a Treff server.
//
// A query to a host returns the server's uptime. A query to an account's
// bare JID, from the account itself or from a contact the account shares
// its presence with ('from' or 'both' subscription), returns 0 while the
// user has an available resource, and otherwise the seconds since the
// user's last session ended, with the status text of its last unavailable
// presence. Anyone else gets <forbidden/>, as XEP-0012 requires. Queries
// to a full JID go to the client.
package last

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
	"mellium.im/xmpp/jid"
)

// NS is the XEP-0012 namespace.
const NS = "jabber:iq:last"

// Module answers last activity queries and records logouts.
type Module struct {
	// Store records logouts. nil means the server's Storage if it
	// implements storage.LastActivity; without one, offline users' last
	// activity is unknown (<item-not-found/>).
	Store storage.LastActivity

	srv     *treff.Server
	started time.Time
	status  *treff.SessionState[string] // status of the session's unavailable presence
	now     func() time.Time
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "last" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.status = treff.NewSessionState[string]()
	if m.now == nil {
		m.now = time.Now
	}
	m.started = m.now()
	if m.Store == nil {
		m.Store, _ = m.srv.Storage.(storage.LastActivity)
	}
	r.AddFeature(NS)
	r.HandleIQ(NS, treff.IQHandlerFunc(m.uptime))
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.account))
	r.OnClientStanza(m.presence)
	r.OnSessionClosed(m.closed)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if m.Store == nil {
			return nil
		}
		if err := m.Store.DeleteLastActivity(ctx, user.String()); err != nil {
			return fmt.Errorf("last: deleting the last activity: %w", err)
		}
		return nil
	})
	return nil
}

func result(seconds int64, status string) []byte {
	b := []byte("<query xmlns='" + NS + "' seconds='" + strconv.FormatInt(max(seconds, 0), 10) + "'")
	if status == "" {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = treff.AppendEscaped(b, status)
	return append(b, "</query>"...)
}

func (m *Module) uptime(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	return result(int64(m.now().Sub(m.started)/time.Second), ""), nil
}

func (m *Module) account(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	requester := iq.From.Bare()
	user := requester
	if iq.To.Localpart() != "" {
		user = iq.To.Bare()
	}
	if !user.Equal(requester) {
		if m.srv.Storage == nil {
			return nil, stanza.Forbidden
		}
		it, err := m.srv.Storage.RosterItem(ctx, user.String(), requester.String())
		if err != nil || (it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth) {
			return nil, stanza.Forbidden
		}
	}
	for _, s := range m.srv.Sessions(user) {
		if s.Available() {
			return result(0, ""), nil
		}
	}
	if m.Store == nil {
		return nil, stanza.ItemNotFound
	}
	t, status, err := m.Store.LastActivity(ctx, user.String())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, stanza.ItemNotFound
	}
	if err != nil {
		return nil, err
	}
	return result(int64(m.now().Sub(t)/time.Second), status), nil
}

// presence remembers the status text of a session's unavailable presence.
func (m *Module) presence(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || st.Type != "unavailable" || st.To.Localpart() != "" || st.To.Domainpart() != "" {
		return false
	}
	var p struct {
		Status string `xml:"status"`
	}
	st.Decoder().Decode(&p)
	if s := m.srv.Session(st.From); s != nil {
		m.status.Set(s, p.Status)
	}
	return false
}

// closed records the logout when the user's last session ends.
func (m *Module) closed(ctx context.Context, s *treff.Session) {
	status, _ := m.status.Get(s)
	if m.Store == nil || len(m.srv.Sessions(s.JID())) > 0 {
		return
	}
	if err := m.Store.SetLastActivity(ctx, s.JID().Bare().String(), m.now(), status); err != nil {
		m.srv.Log().Error("last: record failed", "user", s.JID().Bare().String(), "err", err)
	}
}
