// Package adhoc implements XEP-0050 Ad-Hoc Commands for the server's hosts
// as a Treff module: other modules (or the embedder) add commands, each
// with a XEP-0004 data form to fill in and a function that carries it out.
// Clients list the commands they may run through service discovery (node
// http://jabber.org/protocol/commands) and run them with <command/>.
//
// A command is one stage: executing it returns its form (or runs it at
// once if it has none), submitting the form completes it. Sessions live in
// memory for ten minutes.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0050 namespace, also the disco node listing the commands.
const NS = "http://jabber.org/protocol/commands"

// Command is one ad-hoc command.
type Command struct {
	// Node identifies the command, e.g.
	// "http://jabber.org/protocol/admin#add-user".
	Node string
	// Name is shown to users.
	Name string
	// Allowed reports whether from may see and run the command. nil
	// allows every local user.
	Allowed func(ctx context.Context, from jid.JID) bool
	// Form returns the form to fill in; nil (or a nil Form) runs the
	// command at once, with no values.
	Form func(ctx context.Context, from jid.JID) *Form
	// Run carries out the command with the submitted values. It returns a
	// note for the user, or a form of results (type "result"); an error
	// that is a stanza.Error is sent as such, any other as
	// <internal-server-error/>.
	Run func(ctx context.Context, from jid.JID, v Values) (Result, error)
}

// Form, Field and Values are the XEP-0004 types commands use.
type (
	Form   = dataform.Form
	Field  = dataform.Field
	Values = dataform.Values
)

// FormType is the hidden FORM_TYPE field (XEP-0068).
func FormType(ns string) Field { return dataform.FormType(ns) }

// Result is what a completed command returns: a note, a result form, or
// both.
type Result struct {
	Note string
	Form *Form
}

// Module is the ad-hoc commands module. Add commands with Add before the
// server starts, or in another module's Setup.
type Module struct {
	mu       sync.Mutex
	commands []*Command
	sessions map[string]*session
	srv      *treff.Server
}

type session struct {
	cmd     *Command
	from    string
	created time.Time
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "adhoc" }

// Add adds commands. It panics if a node is taken.
func (m *Module) Add(cmds ...Command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range cmds {
		c := cmds[i]
		for _, old := range m.commands {
			if old.Node == c.Node {
				panic("adhoc: command " + c.Node + " added twice")
			}
		}
		m.commands = append(m.commands, &c)
	}
}

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.sessions = make(map[string]*session)
	r.AddFeature(NS)
	r.AddDiscoNode(NS, nodeList{m})
	r.HandleIQ(NS, treff.IQHandlerFunc(m.handle))
	return nil
}

// nodeList answers disco requests for the command list.
type nodeList struct{ m *Module }

func (n nodeList) DiscoItems(ctx context.Context, from jid.JID) []discoinfo.Item {
	var items []discoinfo.Item
	for _, c := range n.m.visible(ctx, from) {
		items = append(items, discoinfo.Item{JID: n.m.host(from), Node: c.Node, Name: c.Name})
	}
	return items
}

func (n nodeList) DiscoInfo(ctx context.Context, from jid.JID) ([]discoinfo.Identity, []string) {
	return []discoinfo.Identity{{Category: "automation", Type: "command-list", Name: "Commands"}}, nil
}

func (m *Module) host(from jid.JID) string { return from.Domainpart() }

func (m *Module) visible(ctx context.Context, from jid.JID) []*Command {
	m.mu.Lock()
	cmds := slices.Clone(m.commands)
	m.mu.Unlock()
	var out []*Command
	for _, c := range cmds {
		if m.allowed(ctx, c, from) {
			out = append(out, c)
		}
	}
	return out
}

func (m *Module) allowed(ctx context.Context, c *Command, from jid.JID) bool {
	if from.Localpart() == "" || !m.srv.IsLocal(from.Domainpart()) {
		return false
	}
	return c.Allowed == nil || c.Allowed(ctx, from)
}

func (m *Module) command(node string) *Command {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.commands {
		if c.Node == node {
			return c
		}
	}
	return nil
}

// request is a <command/> element.
type request struct {
	Node      string              `xml:"node,attr"`
	SessionID string              `xml:"sessionid,attr"`
	Action    string              `xml:"action,attr"`
	Form      *dataform.Submitted `xml:"jabber:x:data x"`
}

func commandError(cond stanza.Condition, specific string) error {
	// The XEP-0050 specific condition goes in the text, as it always has
	// (stanza.Error's App could carry it as an element).
	return cond.WithText(specific)
}

func (m *Module) handle(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "set" {
		return nil, stanza.BadRequest
	}
	var req request
	if iq.Payload.Space != NS || iq.DecodePayload(&req) != nil {
		return nil, stanza.BadRequest
	}
	c := m.command(req.Node)
	if c == nil {
		return nil, stanza.ItemNotFound
	}
	if !m.allowed(ctx, c, iq.From) {
		return nil, stanza.Forbidden
	}
	from := iq.From.String()
	m.expire()
	if req.SessionID == "" {
		switch req.Action {
		case "", "execute":
		default:
			return nil, commandError("bad-request", "malformed-action")
		}
		var f *Form
		if c.Form != nil {
			f = c.Form(ctx, iq.From)
		}
		if f == nil {
			return m.run(ctx, c, iq.From, "", nil)
		}
		id := newID()
		m.mu.Lock()
		m.sessions[id] = &session{cmd: c, from: from, created: time.Now()}
		m.mu.Unlock()
		b := m.open(c.Node, id, "executing")
		b = append(b, "<actions execute='complete'><complete/></actions>"...)
		b = f.Append(b, "form")
		return append(b, "</command>"...), nil
	}
	m.mu.Lock()
	s := m.sessions[req.SessionID]
	if s != nil && s.from == from && s.cmd == c {
		delete(m.sessions, req.SessionID)
	} else {
		s = nil
	}
	m.mu.Unlock()
	if s == nil {
		return nil, commandError("bad-request", "bad-sessionid")
	}
	switch req.Action {
	case "cancel":
		return append(m.open(c.Node, req.SessionID, "canceled"), "</command>"...), nil
	case "", "execute", "complete":
	default:
		return nil, commandError("bad-request", "bad-action")
	}
	return m.run(ctx, c, iq.From, req.SessionID, req.Form.Values())
}

func (m *Module) run(ctx context.Context, c *Command, from jid.JID, id string, v Values) ([]byte, error) {
	res, err := c.Run(ctx, from, v)
	if err != nil {
		if se, ok := stanza.FromError(err); ok {
			return nil, se
		}
		m.srv.Log().Error("ad-hoc command failed", "node", c.Node, "err", err)
		return nil, stanza.InternalServerError
	}
	if id == "" {
		id = newID()
	}
	b := m.open(c.Node, id, "completed")
	if res.Note != "" {
		b = append(b, "<note type='info'>"...)
		b = treff.AppendEscaped(b, res.Note)
		b = append(b, "</note>"...)
	}
	if res.Form != nil {
		b = res.Form.Append(b, "result")
	}
	return append(b, "</command>"...), nil
}

func (m *Module) open(node, id, status string) []byte {
	b := []byte("<command xmlns='" + NS + "' node='")
	b = treff.AppendEscaped(b, node)
	b = append(b, "' sessionid='"...)
	b = append(b, id...)
	b = append(b, "' status='"...)
	b = append(b, status...)
	return append(b, "'>"...)
}

// expire forgets sessions older than ten minutes.
func (m *Module) expire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sessions {
		if time.Since(s.created) > 10*time.Minute {
			delete(m.sessions, id)
		}
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// JIDs parses the values of a jid-single or jid-multi field into bare
// JIDs, skipping empty ones; it fails on a malformed one.
func JIDs(values []string) ([]jid.JID, error) {
	var out []jid.JID
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		j, err := jid.Parse(v)
		if err != nil {
			return nil, stanza.BadRequest.WithText("not a valid address: " + v)
		}
		out = append(out, j.Bare())
	}
	return out, nil
}
