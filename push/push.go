// Package push implements XEP-0357: Push Notifications (version 0.4.1)
// for a Treff server: the XMPP server's side, which tells a client's app
// server that a device should wake up.
//
// A client enables push for its device with an IQ set to its own account
// naming the app server's JID and a node there, optionally with a
// publish-options data form (such as a secret the app server checks),
// and disables it by app server, or by app server and node. Registrations
// are stored through storage.PushRegistrations and removed with the
// account.
//
// When a message that would wake a phone (Server.Urgent: a body, an
// encrypted payload, a call invitation; not chat states, receipts,
// errors or headlines; group chat messages only when they reach a
// session) reaches the account while the device cannot read it, the
// module publishes a notification to the registration's node on the app
// server, from the user's bare JID, with the client's form as
// publish-options. The device cannot read it when:
//
//   - the session that enabled push hibernates (XEP-0198: its connection
//     broke and it waits to be resumed);
//   - the session that enabled push is inactive (XEP-0352) and got the
//     message while holding stanzas back: a phone with its screen off;
//   - the account has no session that may receive the message (the
//     message is for offline storage): then every registration of the
//     account is notified.
//
// A session that enabled push and is connected and active is not
// notified, nor is a registration whose device has a session that did
// not get the message. A device that reconnects without enabling push
// again is notified only while the account has no session: clients
// enable push after every login. Each registration is notified once per
// message, however many of its sessions got it.
//
// The notification holds the summary form of XEP-0357 section 7: the
// number of messages it stands for (this one and those the rate limit
// held back since the previous notification), the sender's bare JID,
// and the message's body only if the operator allows it (WithBody;
// off by default: the app server, and the push service behind it, would
// read it).
//
// Rate limit: a registration is sent at most one notification per
// Interval, unless the previous one was answered with a result, in which
// case the next message is notified at once; messages held back are
// counted in the next notification. Error answers from the app server,
// other than those of type wait, disable the registration (it is
// deleted) once MaxErrors of them came in a row, as Prosody's
// mod_cloud_notify does (push_max_errors, 16 by default): a device whose
// app was removed or reset stops being notified, a passing failure
// between the servers does not end its notifications. A result resets
// the count; a timeout or an error of type wait leaves it as it is.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the namespace of XEP-0357.
const NS = "urn:xmpp:push:0"

// NSSummary is the FORM_TYPE of the notification's summary form.
const NSSummary = "urn:xmpp:push:summary"

// NSPublishOptions is the FORM_TYPE a client's publish-options form
// carries (XEP-0060 7.1.5).
const NSPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"

// Defaults of Module's fields.
const (
	DefaultInterval         = 30 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultMaxRegistrations = 5
	DefaultMaxErrors        = 16
)

// maxBody bounds the body sent with WithBody, in bytes.
const maxBody = 512

// Module sends push notifications.
type Module struct {
	// Store keeps the registrations. nil means the server's Storage,
	// which must then implement storage.PushRegistrations.
	Store storage.PushRegistrations
	// WithBody includes the message's body in notifications (the field
	// last-message-body, cut to 512 bytes). Off by default: the app
	// server and the push service behind it read what is sent.
	WithBody bool
	// Interval is the shortest time between two notifications of one
	// registration while the earlier is unanswered; 0 means
	// DefaultInterval.
	Interval time.Duration
	// Timeout is how long the module waits for the app server's answer;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxRegistrations is the most registrations an account may have;
	// enabling one more is refused with <resource-constraint/>. 0 means
	// DefaultMaxRegistrations.
	MaxRegistrations int
	// MaxErrors is how many error answers in a row (not counting those
	// of type wait) disable a registration; 0 means DefaultMaxErrors, 1
	// disables it at the first.
	MaxErrors int
	// Now returns the current time, for the rate limit; nil means
	// time.Now.
	Now func() time.Time
	// Answered, if set, is called after each notification's outcome is
	// known and acted on (a registration the app server refused is
	// deleted by then), from the goroutine that sent it: err is nil for
	// a result, a stanza.Error for an error reply, the context's error
	// for a timeout or shutdown.
	Answered func(user jid.JID, r storage.PushRegistration, err error)

	srv    *treff.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	state map[regKey]*regState
}

var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// regKey identifies a registration of a user.
type regKey struct{ user, service, node string }

// regState is what the rate limit knows of a registration, under
// Module.mu.
type regState struct {
	sent     time.Time // when the last notification was sent
	answered bool      // with a result
	held     int       // messages held back since
	errors   int       // error answers in a row
}

// enabled is, per session, the registrations (service and node) it
// enabled.
var enabled = treff.NewSessionState[[]regKey]()

// Name implements treff.Module.
func (*Module) Name() string { return "push" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "push"); err != nil {
		return err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.state = make(map[regKey]*regState)
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.AddAccountFeature(NS)
	// Before the offline module stores the message; nothing is changed.
	r.InPhase(treff.PhaseStamp).OnUndeliverable(m.undeliverable)
	r.InPhase(treff.PhaseObserve).OnDelivered(m.delivered)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		m.forget(user.String(), "", "")
		if err := m.Store.DeleteAllPushRegistrations(ctx, user.String()); err != nil {
			return fmt.Errorf("push: deleting registrations: %w", err)
		}
		return nil
	})
	return nil
}

// Stop implements treff.Stopper: it ends the waits for answers and
// returns when the notifications' goroutines have.
func (m *Module) Stop(ctx context.Context) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Module) interval() time.Duration {
	if m.Interval > 0 {
		return m.Interval
	}
	return DefaultInterval
}

func (m *Module) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return DefaultTimeout
}

func (m *Module) maxRegistrations() int {
	if m.MaxRegistrations > 0 {
		return m.MaxRegistrations
	}
	return DefaultMaxRegistrations
}

// request is an <enable/> or <disable/> element.
type request struct {
	JID  string              `xml:"jid,attr"`
	Node string              `xml:"node,attr"`
	Form *dataform.Submitted `xml:"jabber:x:data x"`
}

func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	owner := iq.From.Bare()
	if !iq.To.Equal(jid.JID{}) && !iq.To.Equal(owner) {
		return nil, stanza.Forbidden
	}
	if iq.Type != "set" {
		return nil, stanza.BadRequest
	}
	var req request
	if err := iq.DecodePayload(&req); err != nil {
		return nil, stanza.BadRequest
	}
	service, err := jid.Parse(req.JID)
	if err != nil {
		return nil, stanza.BadRequest.WithText("the jid attribute names no app server")
	}
	user := owner.String()
	switch iq.Payload.Local {
	case "enable":
		if service.Bare().Equal(owner) {
			return nil, stanza.BadRequest.WithText("the app server cannot be your own account")
		}
		return nil, m.enable(ctx, iq, user, service.String(), req)
	case "disable":
		if err := m.Store.DeletePushRegistrations(ctx, user, service.String(), req.Node); err != nil {
			return nil, err
		}
		m.forget(user, service.String(), req.Node)
		return nil, nil
	}
	return nil, stanza.BadRequest
}

func (m *Module) enable(ctx context.Context, iq *treff.Stanza, user, service string, req request) error {
	if req.Node == "" {
		return stanza.BadRequest.WithText("the node attribute is missing")
	}
	reg := storage.PushRegistration{Service: service, Node: req.Node}
	if req.Form != nil {
		if req.Form.Type != "submit" || req.Form.Values().Get("FORM_TYPE") != NSPublishOptions {
			return stanza.BadRequest.WithText("the form is not a submitted " + NSPublishOptions + " form")
		}
		if reg.Form = formOf(iq); reg.Form == nil {
			return stanza.BadRequest.WithText("the form uses a namespace prefix it does not declare")
		}
	}
	regs, err := m.Store.PushRegistrations(ctx, user)
	if err != nil {
		return err
	}
	known := false
	for _, r := range regs {
		known = known || (r.Service == service && r.Node == req.Node)
	}
	if !known && len(regs) >= m.maxRegistrations() {
		return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint, Text: "too many push registrations: disable one"}
	}
	if err := m.Store.PutPushRegistration(ctx, user, reg); err != nil {
		return err
	}
	m.forget(user, service, req.Node) // a fresh start for the rate limit
	if s := m.srv.Session(iq.From); s != nil {
		k := regKey{user, service, req.Node}
		enabled.Update(s, func(old []regKey, _ bool) []regKey {
			for _, o := range old {
				if o == k {
					return old
				}
			}
			return append(append([]regKey(nil), old...), k)
		})
	}
	return nil
}

// formOf returns the <x xmlns='jabber:x:data'/> child of the enable
// element as the client wrote it, or nil if it uses a prefix declared
// outside it (it could not be sent on its own).
func formOf(iq *treff.Stanza) []byte {
	for c := range iq.Children() {
		for f := range c.Children() {
			if f.Name.Space == dataform.NS && f.Name.Local == "x" {
				if f.SelfContained() {
					return []byte(f.Raw())
				}
				return nil
			}
		}
	}
	return nil
}

// forget drops the rate limit's state of the user's registrations with
// service and node (any if empty).
func (m *Module) forget(user, service, node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.state {
		if k.user == user && (service == "" || k.service == service) && (node == "" || k.node == node) {
			delete(m.state, k)
		}
	}
}

// wakes reports whether a message is worth a notification: urgent, and
// not an error or a headline (an automated notice).
func (m *Module) wakes(st *treff.Stanza) bool {
	return st.Kind == treff.KindMessage && st.Type != "error" && st.Type != "headline" && m.srv.Urgent(st.Raw())
}

// undeliverable notifies every registration of an account that has no
// session for the message (it goes to offline storage).
func (m *Module) undeliverable(ctx context.Context, st *treff.Stanza) bool {
	if !m.wakes(st) || st.Type == "groupchat" {
		return false // not stored offline (RFC 6121 8.5.2.1.1)
	}
	m.notify(ctx, st, nil)
	return false
}

// delivered notifies the registrations enabled by the hibernating or
// inactive sessions that got the message.
func (m *Module) delivered(ctx context.Context, st *treff.Stanza, to []*treff.Session) {
	if !m.wakes(st) {
		return
	}
	var keys []regKey
	for _, s := range to {
		ks, _ := enabled.Get(s)
		if len(ks) == 0 || !(s.Hibernating() || s.Holding()) {
			continue
		}
		for _, k := range ks {
			if !contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) > 0 {
		m.notify(ctx, st, keys)
	}
}

func contains(ks []regKey, k regKey) bool {
	for _, o := range ks {
		if o == k {
			return true
		}
	}
	return false
}

// notify sends a notification about st to the account's registrations
// that are among only (all if only is nil) and that the rate limit lets
// through.
func (m *Module) notify(ctx context.Context, st *treff.Stanza, only []regKey) {
	user := st.To.Bare()
	regs, err := m.Store.PushRegistrations(ctx, user.String())
	if err != nil {
		m.srv.Log().Error("push: reading registrations", "user", user.String(), "err", err)
		return
	}
	for _, r := range regs {
		k := regKey{user.String(), r.Service, r.Node}
		if only != nil && !contains(only, k) {
			continue
		}
		count, sent, ok := m.admit(k)
		if !ok {
			continue
		}
		iq, err := m.publish(user, r, st, count)
		if err != nil {
			m.srv.Log().Error("push: building a notification", "user", user.String(), "err", err)
			continue
		}
		m.wg.Add(1)
		go m.send(user, k, r, iq, sent)
	}
}

// admit applies the rate limit to a message for k: whether to notify,
// how many messages the notification stands for, and when it is sent.
func (m *Module) admit(k regKey) (count int, sent time.Time, ok bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state[k]
	if s == nil {
		s = &regState{}
		m.state[k] = s
	} else if !s.answered && now.Sub(s.sent) < m.interval() {
		s.held++
		return 0, time.Time{}, false
	}
	count = s.held + 1
	s.sent, s.answered, s.held = now, false, 0
	return count, now, true
}

// answered records a result for k's notification sent at sent.
func (m *Module) answered(k regKey, sent time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.state[k]; s != nil {
		s.errors = 0
		if s.sent.Equal(sent) {
			s.answered = true
		}
	}
}

// failed counts an error answer for k and reports whether k has had
// MaxErrors in a row.
func (m *Module) failed(k regKey) bool {
	max := m.MaxErrors
	if max <= 0 {
		max = DefaultMaxErrors
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state[k]
	if s == nil {
		return false // disabled or enabled again meanwhile
	}
	s.errors++
	return s.errors >= max
}

// publish builds the notification IQ.
func (m *Module) publish(user jid.JID, r storage.PushRegistration, st *treff.Stanza, count int) (*treff.Stanza, error) {
	form := dataform.Form{Fields: []dataform.Field{
		dataform.FormType(NSSummary),
		{Var: "message-count", Values: []string{fmt.Sprint(count)}},
		{Var: "last-message-sender", Values: []string{st.From.Bare().String()}},
	}}
	if m.WithBody {
		if body := bodyOf(st); body != "" {
			form.Fields = append(form.Fields, dataform.Field{Var: "last-message-body", Values: []string{body}})
		}
	}
	b := []byte("<iq type='set' id='push-")
	b = append(b, newID()...)
	b = append(b, "' from='"...)
	b = treff.AppendEscaped(b, user.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, r.Service)
	b = append(b, "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='"...)
	b = treff.AppendEscaped(b, r.Node)
	b = append(b, "'><item><notification xmlns='"+NS+"'>"...)
	b = form.Append(b, "submit")
	b = append(b, "</notification></item></publish>"...)
	if len(r.Form) > 0 {
		b = append(b, "<publish-options>"...)
		b = append(b, r.Form...)
		b = append(b, "</publish-options>"...)
	}
	b = append(b, "</pubsub></iq>"...)
	return treff.NewStanza(b)
}

// bodyOf returns the message's body, cut to maxBody bytes.
func bodyOf(st *treff.Stanza) string {
	for c := range st.Children() {
		if c.Name.Local == "body" && c.Name.Space == "jabber:client" {
			body := c.Text()
			if len(body) > maxBody {
				body = body[:maxBody]
				for !utf8.ValidString(body) {
					body = body[:len(body)-1]
				}
			}
			return body
		}
	}
	return ""
}

func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// send publishes a notification and acts on the answer.
func (m *Module) send(user jid.JID, k regKey, r storage.PushRegistration, iq *treff.Stanza, sent time.Time) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, m.timeout())
	defer cancel()
	resp, err := m.srv.SendIQ(ctx, iq)
	if err == nil && resp.Type == "error" {
		err = errorOf(resp)
	}
	var se stanza.Error
	switch {
	case err == nil:
		m.answered(k, sent)
	case errors.As(err, &se) && se.ErrorType() != stanza.Wait && m.failed(k):
		// The app server does not know the node (any more): the device
		// was reset or the app removed.
		m.srv.Log().Info("push: registration disabled by the app server's errors", "user", user.String(), "service", r.Service, "why", string(se.Condition))
		if derr := m.Store.DeletePushRegistrations(context.WithoutCancel(ctx), user.String(), r.Service, r.Node); derr != nil {
			m.srv.Log().Error("push: deleting a registration", "user", user.String(), "err", derr)
		}
		m.forget(k.user, k.service, k.node)
	}
	if m.Answered != nil {
		m.Answered(user, r, err)
	}
}

// errorOf returns the stanza error of an error response.
func errorOf(resp *treff.Stanza) error {
	e := stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}
	for c := range resp.Children() {
		if c.Name.Local != "error" {
			continue
		}
		if t, ok := c.Attr("type"); ok {
			e.Type = stanza.ErrorType(t)
		}
		for d := range c.Children() {
			if d.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && d.Name.Local != "text" {
				e.Condition = stanza.Condition(d.Name.Local)
			}
		}
	}
	return e
}
