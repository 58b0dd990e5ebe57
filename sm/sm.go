// Package sm implements XEP-0198: Stream Management for a Treff server:
// acknowledgements in both directions and resumption of a session whose
// connection broke.
//
// The protocol lives here, on the session's acknowledged-delivery API
// (treff.Session.Track, Handled, Acknowledge; treff.Negotiation.Resume);
// the counting, the batching of acknowledgement requests, hibernation
// and what happens to unacknowledged stanzas live in the session layer,
// under its send lock. A client enables it after binding with <enable/>
// (resume='true' for resumption); the server then counts and keeps what
// it sends until the client acknowledges it, asks for acknowledgements
// (<r/>) with a batch of stanzas once 8 are unacknowledged or a second
// after the first, and answers the client's <r/> with its own count.
//
// A resumable session whose connection is lost hibernates for
// ResumeTimeout; a new stream of the same account resumes it with
// <resume previd=... h=.../> before binding and gets <resumed/>, then
// what it had not acknowledged. Not resumed in time, the session ends,
// and its unacknowledged messages go to the account's other sessions or
// offline storage (with the offline module, they are in offline storage
// from the moment the connection broke: nothing the server acknowledged
// to a sender is lost in a crash).
package sm

import (
	"context"
	"crypto/rand"
	"strconv"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0198 namespace.
const NS = "urn:xmpp:sm:3"

// DefaultResumeTimeout is how long a session waits to be resumed unless
// configured otherwise.
const DefaultResumeTimeout = 5 * time.Minute

const (
	request = "<r xmlns='" + NS + "'/>"
	feature = "<sm xmlns='" + NS + "'/>"
)

// Module is stream management.
type Module struct {
	// ResumeTimeout is how long a session whose connection broke waits
	// for its client to resume it; what it was sent meanwhile is
	// delivered on resumption. A session not resumed in time ends, and
	// the messages its client did not acknowledge go to the account's
	// other sessions or offline storage. 0 means DefaultResumeTimeout;
	// negative disables resumption (acknowledgements still work).
	ResumeTimeout time.Duration

	mu      sync.Mutex
	ids     map[string]*treff.Session // resumable sessions by resumption id
	id      *treff.SessionState[string]
	settles map[*treff.Session][]chan struct{} // Settle calls waiting for an <a/>
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "sm" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.ids = make(map[string]*treff.Session)
	m.settles = make(map[*treff.Session][]chan struct{})
	m.id = treff.NewSessionState[string]()
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: feature})
	r.HandleNonza(NS, treff.NonzaHandlerFunc(m.nonza))
	r.HandleNegotiation(NS, treff.NegotiationHandlerFunc(m.negotiation))
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		if id, ok := m.id.Get(s); ok {
			m.mu.Lock()
			if m.ids[id] == s {
				delete(m.ids, id)
			}
			m.mu.Unlock()
		}
	})
	return nil
}

func (m *Module) resumeTimeout() time.Duration {
	switch {
	case m.ResumeTimeout < 0:
		return 0
	case m.ResumeTimeout == 0:
		return DefaultResumeTimeout
	}
	return m.ResumeTimeout
}

// Enable answers <enable/> on a bound session (XEP-0198 3). It queues
// <enabled/>, or <failed/> if the session already has stream management.
func (m *Module) Enable(s *treff.Session, resume bool) {
	if b, ok := m.enable(s, resume, true); !ok {
		s.SendNonza(b)
	}
}

// enable starts stream management on s and returns <enabled/> (queued
// already if queue) and true, or <failed/> (not queued) and false.
func (m *Module) enable(s *treff.Session, resume, queue bool) ([]byte, bool) {
	if _, on := s.Handled(); on {
		return failed(stanza.UnexpectedRequest), false
	}
	timeout := m.resumeTimeout()
	if !resume {
		timeout = 0
	}
	b := []byte("<enabled xmlns='" + NS + "'")
	var id string
	if timeout > 0 {
		id = rand.Text()
		b = append(b, " id='"+id+"' resume='true' max='"...)
		b = strconv.AppendInt(b, int64(timeout/time.Second), 10)
		b = append(b, '\'')
		// Known before <enabled/> is queued: the client may resume as
		// soon as it has read it.
		m.id.Set(s, id)
		m.mu.Lock()
		m.ids[id] = s
		m.mu.Unlock()
	}
	b = append(b, "/>"...)
	reply := b
	if !queue {
		reply = nil
	}
	if err := s.Track(reply, []byte(request), timeout); err != nil {
		if id != "" {
			// Closing: it will not be resumed.
			m.mu.Lock()
			delete(m.ids, id)
			m.mu.Unlock()
			m.id.Delete(s)
		}
		return failed(stanza.UnexpectedRequest), false
	}
	return b, true
}

// nonza handles the XEP-0198 elements of a bound session.
func (m *Module) nonza(ctx context.Context, s *treff.Session, n *treff.Nonza) {
	switch n.Name.Local {
	case "enable":
		v, _ := n.Attr("resume")
		m.Enable(s, v == "true" || v == "1")
	case "r":
		if h, ok := s.Handled(); ok {
			s.SendNonza(count(nil, "a", h, ""))
		}
	case "a":
		v, _ := n.Attr("h")
		h, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			s.CloseWith(&treff.StreamError{Condition: "undefined-condition", Text: "h is not a 32-bit count"})
			return
		}
		switch err := s.Acknowledge(uint32(h)); e := err.(type) {
		case nil:
			m.settled(s)
		case *treff.AckError:
			s.CloseWith(tooHigh(e))
		default:
			if err == treff.ErrNotTracking {
				s.CloseWith(&treff.StreamError{Condition: "unsupported-stanza-type", Text: "stream management is not enabled"})
			}
		}
	case "resume":
		s.SendNonza(failed(stanza.UnexpectedRequest))
	default:
		s.Close("unsupported-stanza-type", "")
	}
}

// Settle gives a session with stream management the chance to settle
// its accounts before the server closes its stream (a node draining for
// an upgrade): it sends the client the count of stanzas the server
// handled (<a h/>, so that the client knows which of its own stanzas
// arrived; XEP-0198 4 lets either side send one at any time) and asks
// for the client's (<r/>), then waits for the client's next <a/>, which
// releases what the client received. It returns nil at once for a
// session without stream management, and ctx's error if the client does
// not answer in time. What the client does not acknowledge is not lost
// when the stream then closes: it goes to the account's other sessions
// or offline storage, like any unacknowledged stanza.
func (m *Module) Settle(ctx context.Context, s *treff.Session) error {
	h, on := s.Handled()
	if !on {
		return nil
	}
	ch := make(chan struct{})
	m.mu.Lock()
	m.settles[s] = append(m.settles[s], ch)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		waiting := m.settles[s]
		for i, c := range waiting {
			if c == ch {
				waiting = append(waiting[:i], waiting[i+1:]...)
				break
			}
		}
		if len(waiting) == 0 {
			delete(m.settles, s)
		} else {
			m.settles[s] = waiting
		}
	}()
	if err := s.SendNonza(append(count(nil, "a", h, ""), request...)); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-s.Context().Done():
		return treff.ErrSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settled wakes the Settle calls waiting for s's acknowledgement.
func (m *Module) settled(s *treff.Session) {
	m.mu.Lock()
	waiting := m.settles[s]
	delete(m.settles, s)
	m.mu.Unlock()
	for _, ch := range waiting {
		close(ch)
	}
}

// negotiation handles the XEP-0198 elements of a stream that has not
// bound a resource: <resume/> after authentication (5), <enable/>
// before binding (3: refused).
func (m *Module) negotiation(ctx context.Context, n *treff.Negotiation, el *treff.Nonza) error {
	if n.User().Localpart() == "" {
		return &treff.StreamError{Condition: "not-authorized"}
	}
	switch el.Name.Local {
	case "enable":
		return n.Write(failed(stanza.UnexpectedRequest))
	case "resume":
		return m.resume(n, el)
	}
	return &treff.StreamError{Condition: "not-authorized", Text: "bind a resource first"}
}

// resume answers <resume/> (XEP-0198 5).
func (m *Module) resume(n *treff.Negotiation, el *treff.Nonza) error {
	previd, _ := el.Attr("previd")
	hv, _ := el.Attr("h")
	h, err := strconv.ParseUint(hv, 10, 32)
	if err != nil {
		return n.Write(failed(stanza.BadRequest))
	}
	m.mu.Lock()
	s := m.ids[previd]
	m.mu.Unlock()
	err = n.Resume(s, uint32(h), func(handled uint32) []byte {
		return count(nil, "resumed", handled, previd)
	})
	switch e := err.(type) {
	case nil:
		return nil
	case *treff.AckError:
		return tooHigh(e)
	}
	// Unknown, expired, someone else's: all look the same to the client.
	return n.Write(failed(stanza.ItemNotFound))
}

// tooHigh is the stream error for an acknowledgement of more than was
// sent (XEP-0198 4).
func tooHigh(e *treff.AckError) *treff.StreamError {
	return &treff.StreamError{
		Condition: "undefined-condition",
		Text:      "acknowledged more stanzas than were sent",
		App: "<handled-count-too-high xmlns='" + NS + "' h='" + strconv.FormatUint(uint64(e.H), 10) +
			"' send-count='" + strconv.FormatUint(uint64(e.Sent), 10) + "'/>",
	}
}

func failed(cond stanza.Condition) []byte {
	return []byte("<failed xmlns='" + NS + "'><" + string(cond) + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
}

// count appends <name xmlns=... h='h' [previd=...]/>.
func count(b []byte, name string, h uint32, previd string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, " xmlns='"+NS+"' h='"...)
	b = strconv.AppendUint(b, uint64(h), 10)
	b = append(b, '\'')
	if previd != "" {
		b = append(b, " previd='"...)
		b = append(b, stanza.AppendEscaped(nil, previd)...)
		b = append(b, '\'')
	}
	return append(b, "/>"...)
}

// Bind2Feature and Bind2 make stream management an inline feature of
// XEP-0386 Bind 2 (package bind2): <enable/> in the client's <bind/>
// enables it on the new session, and <enabled/> (or <failed/>) goes
// into <bound/>.
func (m *Module) Bind2Feature() string { return NS }

// Bind2 enables stream management on s if el is <enable/>.
func (m *Module) Bind2(ctx context.Context, s *treff.Session, el *treff.Nonza) (string, error) {
	if el.Name.Local != "enable" {
		return "", nil
	}
	v, _ := el.Attr("resume")
	b, _ := m.enable(s, v == "true" || v == "1", false)
	return string(b), nil
}

// Inline and Success make resumption an inline feature of XEP-0388 SASL2
// (package sasl2; XEP-0198 6.1 "inline"): a <resume/> in the client's
// <authenticate/> resumes the session in the same step, and <resumed/>
// (or <failed/>) goes into <success/>. Put the Module first in
// sasl2.Module.Inline, so that Bind 2 knows whether to bind.
func (m *Module) Inline(n *treff.Negotiation) string {
	if m.resumeTimeout() == 0 {
		return ""
	}
	return feature
}

// Success resumes the session the client's <resume/> names, if any. The
// retransmission of what the client had not acknowledged follows
// <success/> (treff.Negotiation.Resume).
func (m *Module) Success(ctx context.Context, a *sasl2.Auth) (string, error) {
	el, ok := a.Child(NS, "resume")
	if !ok || a.Session != nil {
		return "", nil
	}
	previd, _ := el.Attr("previd")
	hv, _ := el.Attr("h")
	h, err := strconv.ParseUint(hv, 10, 32)
	if err != nil {
		return string(failed(stanza.BadRequest)), nil
	}
	m.mu.Lock()
	s := m.ids[previd]
	m.mu.Unlock()
	var resumed []byte
	err = a.N.Resume(s, uint32(h), func(handled uint32) []byte {
		resumed = count(nil, "resumed", handled, previd)
		return nil // it goes inside <success/>
	})
	switch err.(type) {
	case nil:
		a.Session = s
		return string(resumed), nil
	case *treff.AckError:
		// The client counts more than it was sent: it cannot resume
		// this session, but it may bind a new one.
		return string(failed(stanza.UndefinedCondition)), nil
	}
	return string(failed(stanza.ItemNotFound)), nil
}

var _ sasl2.Inline = (*Module)(nil)
