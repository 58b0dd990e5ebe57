package mam

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// pageBytes bounds the size of the result messages of one page, so that a
// page of large messages does not overrun the requester's queue: the page
// ends early (incomplete) once it would exceed it, but holds at least one
// message.
const pageBytes = 256 << 10

// queryForm is the answer to a request for the query fields (XEP-0313
// 4.1.5).
const queryForm = "<query xmlns='" + NS + "'><x xmlns='" + dataform.NS + "' type='form'>" +
	"<field type='hidden' var='FORM_TYPE'><value>" + NS + "</value></field>" +
	"<field type='jid-single' var='with'/>" +
	"<field type='text-single' var='start'/>" +
	"<field type='text-single' var='end'/>" +
	"<field type='text-single' var='before-id'/>" +
	"<field type='text-single' var='after-id'/>" +
	"<field type='list-multi' var='ids'><validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:string'><open/></validate></field>" +
	"</x></query>"

// handleIQ answers the archive requests to a user's bare JID: queries,
// the query form, preferences and metadata. Only the owner may ask.
func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	owner := iq.From.Bare()
	if (!iq.To.Equal(jid.JID{}) && !iq.To.Bare().Equal(owner)) || iq.From.Localpart() == "" || !m.srv.IsLocal(owner.Domainpart()) {
		return nil, stanza.Forbidden
	}
	switch iq.Payload.Local {
	case "prefs":
		if iq.Type == "get" {
			p, err := m.Store.ArchivePrefs(ctx, owner.String())
			if err != nil {
				return nil, err
			}
			return m.appendPrefs(nil, p), nil
		}
		return m.setPrefs(ctx, iq, owner)
	}
	return m.arch.Answer(ctx, m.srv, owner, iq)
}

// queryEl is a <query/> set by a client.
type queryEl struct {
	QueryID string              `xml:"queryid,attr"`
	Node    string              `xml:"node,attr"`
	Form    *dataform.Submitted `xml:"jabber:x:data x"`
	Set     *rsmSet             `xml:"http://jabber.org/protocol/rsm set"`
	Flip    *struct{}           `xml:"urn:xmpp:mam:2 flip-page"`
}

// rsmSet is a XEP-0059 <set/> in a request.
type rsmSet struct {
	Max    *string `xml:"max"`
	After  *string `xml:"after"`
	Before *string `xml:"before"`
	Index  *string `xml:"index"`
}

func badRequest(text string) error {
	return stanza.BadRequest.WithText(text)
}

// parseQuery turns a query into a storage query.
func (a *Archiver) parseQuery(q *queryEl) (storage.ArchiveQuery, error) {
	sq := storage.ArchiveQuery{Limit: a.maxPage()}
	if q.Node != "" {
		return sq, stanza.ItemNotFound.WithText("this archive has no nodes")
	}
	for name, vals := range q.Form.Values() {
		v := ""
		if len(vals) > 0 {
			v = vals[0]
		}
		var err error
		switch name {
		case "FORM_TYPE":
			if v != NS {
				return sq, badRequest("the form's FORM_TYPE must be " + NS)
			}
		case "with":
			j, perr := jid.Parse(v)
			if perr != nil {
				return sq, stanza.JIDMalformed.WithText("the 'with' field is not a JID")
			}
			sq.With = j.String()
		case "start":
			sq.Start, err = parseTime(v, "start")
		case "end":
			sq.End, err = parseTime(v, "end")
		case "after-id":
			sq.AfterID = v
		case "before-id":
			sq.BeforeID = v
		case "ids":
			sq.IDs = slices.DeleteFunc(slices.Clone(vals), func(s string) bool { return s == "" })
			if len(sq.IDs) == 0 {
				return sq, badRequest("the 'ids' field is empty")
			}
		default:
			return sq, stanza.FeatureNotImplemented.WithText("unknown field " + name)
		}
		if err != nil {
			return sq, err
		}
	}
	if s := q.Set; s != nil {
		if s.Index != nil {
			return sq, stanza.FeatureNotImplemented.WithText("paging by index is not supported; use after or before")
		}
		if s.Max != nil {
			n, err := strconv.Atoi(string(bytes.TrimSpace([]byte(*s.Max))))
			if err != nil || n < 0 {
				return sq, badRequest("max must be a number")
			}
			sq.Limit = min(n, a.maxPage())
		}
		if s.After != nil {
			if *s.After == "" {
				return sq, badRequest("after needs an ID")
			}
			sq.After = *s.After
		}
		if s.Before != nil {
			sq.Before, sq.Backward = *s.Before, true
		}
	}
	return sq, nil
}

func parseTime(v, field string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, badRequest("the '" + field + "' field is not a XEP-0082 date and time")
	}
	return t.UTC(), nil
}

// query runs an archive query: it sends the page's messages to the
// requester and returns the <fin/>.
func (a *Archiver) query(ctx context.Context, srv *treff.Server, iq *treff.Stanza, owner jid.JID) ([]byte, error) {
	var q queryEl
	if err := iq.DecodePayload(&q); err != nil {
		return nil, badRequest("malformed query")
	}
	sq, err := a.parseQuery(&q)
	if err != nil {
		return nil, err
	}
	sess := srv.Session(iq.From)
	if sess == nil && srv.IsLocal(iq.From.Domainpart()) {
		return nil, stanza.ServiceUnavailable
	}
	page, err := a.Store.QueryArchive(ctx, owner.String(), sq)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, stanza.ItemNotFound.WithText("no such message in the archive")
	}
	if err != nil {
		return nil, err
	}
	// Build the results, then keep what fits in pageBytes: the oldest when
	// paging forward, the newest when paging backward.
	results := make([][]byte, len(page.Messages))
	for i := range page.Messages {
		results[i] = appendResult(nil, iq.From, owner, q.QueryID, &page.Messages[i])
	}
	keepFrom, keepTo, size := 0, len(results), 0
	if sq.Backward {
		for keepFrom = len(results); keepFrom > 0 && (keepFrom == len(results) || size+len(results[keepFrom-1]) <= pageBytes); keepFrom-- {
			size += len(results[keepFrom-1])
		}
	} else {
		for keepTo = 0; keepTo < len(results) && (keepTo == 0 || size+len(results[keepTo]) <= pageBytes); keepTo++ {
			size += len(results[keepTo])
		}
	}
	if keepFrom > 0 || keepTo < len(results) {
		page.Complete = false
		page.Index += keepFrom
		page.Messages = page.Messages[keepFrom:keepTo]
		results = results[keepFrom:keepTo]
	}
	if q.Flip != nil {
		slices.Reverse(results)
	}
	for _, r := range results {
		if sess == nil {
			// A remote requester (an occupant of a room from another
			// server): the results go the way the answer will.
			st, err := treff.NewStanza(r)
			if err != nil {
				return nil, err
			}
			srv.Route(ctx, st)
			continue
		}
		if sess.Send(r) != nil {
			return nil, treff.ErrNoReply // the session is gone
		}
	}
	return appendFin(nil, page), nil
}

// appendResult appends the <message/> that carries one archived message
// to the requester.
func appendResult(b []byte, to, owner jid.JID, queryID string, msg *storage.ArchivedMessage) []byte {
	b = append(b, "<message to='"...)
	b = treff.AppendEscaped(b, to.String())
	b = append(b, "' from='"...)
	b = treff.AppendEscaped(b, owner.String())
	b = append(b, "'><result xmlns='"+NS+"'"...)
	if queryID != "" {
		b = append(b, " queryid='"...)
		b = treff.AppendEscaped(b, queryID)
		b = append(b, '\'')
	}
	b = append(b, " id='"...)
	b = treff.AppendEscaped(b, msg.ID)
	b = append(b, "'><forwarded xmlns='"+NSForward+"'><delay xmlns='"+NSDelay+"' stamp='"...)
	b = msg.Time.UTC().AppendFormat(b, stampForm)
	b = append(b, "'/>"...)
	b = appendClientNS(b, msg.Stanza)
	return append(b, "</forwarded></result></message>"...)
}

// appendClientNS appends the stored stanza with an xmlns='jabber:client'
// on its element unless it has one already: inside <forwarded/> the
// stream's default namespace no longer applies (XEP-0297).
func appendClientNS(b, stanza []byte) []byte {
	name := bytes.IndexAny(stanza, " \t\r\n/>")
	if name < 0 || hasXMLNS(stanza[name:]) {
		return append(b, stanza...)
	}
	b = append(b, stanza[:name]...)
	b = append(b, " xmlns='"+nsClient+"'"...)
	return append(b, stanza[name:]...)
}

// hasXMLNS reports whether the start tag at the beginning of rest (just
// after the element's name) declares a default namespace.
func hasXMLNS(rest []byte) bool {
	var quote byte
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return false
		case (c == ' ' || c == '\t' || c == '\r' || c == '\n') && bytes.HasPrefix(rest[i+1:], []byte("xmlns")):
			after := bytes.TrimLeft(rest[i+1+len("xmlns"):], " \t\r\n")
			if len(after) > 0 && after[0] == '=' {
				return true
			}
		}
	}
	return false
}

// appendFin appends the <fin/> that ends a query.
func appendFin(b []byte, page storage.ArchivePage) []byte {
	b = append(b, "<fin xmlns='"+NS+"'"...)
	if page.Complete {
		b = append(b, " complete='true'"...)
	}
	b = append(b, "><set xmlns='"+NSRSM+"'>"...)
	if n := len(page.Messages); n > 0 {
		b = append(b, "<first index='"...)
		b = strconv.AppendInt(b, int64(page.Index), 10)
		b = append(b, "'>"...)
		b = treff.AppendEscaped(b, page.Messages[0].ID)
		b = append(b, "</first><last>"...)
		b = treff.AppendEscaped(b, page.Messages[n-1].ID)
		b = append(b, "</last>"...)
	}
	b = append(b, "<count>"...)
	b = strconv.AppendInt(b, int64(page.Count), 10)
	return append(b, "</count></set></fin>"...)
}

// metadata answers a metadata request (XEP-0313 6): the first and last
// message of the archive, nothing for an empty one.
func (a *Archiver) metadata(ctx context.Context, owner jid.JID) ([]byte, error) {
	first, err := a.Store.QueryArchive(ctx, owner.String(), storage.ArchiveQuery{Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(first.Messages) == 0 {
		return []byte("<metadata xmlns='" + NS + "'/>"), nil
	}
	last, err := a.Store.QueryArchive(ctx, owner.String(), storage.ArchiveQuery{Limit: 1, Backward: true})
	if err != nil {
		return nil, err
	}
	b := []byte("<metadata xmlns='" + NS + "'>")
	for _, e := range []struct {
		name string
		msg  storage.ArchivedMessage
	}{{"start", first.Messages[0]}, {"end", last.Messages[len(last.Messages)-1]}} {
		b = append(b, '<')
		b = append(b, e.name...)
		b = append(b, " id='"...)
		b = treff.AppendEscaped(b, e.msg.ID)
		b = append(b, "' timestamp='"...)
		b = e.msg.Time.UTC().AppendFormat(b, stampForm)
		b = append(b, "'/>"...)
	}
	return append(b, "</metadata>"...), nil
}

// prefsEl is a <prefs/> set by a client (XEP-0441).
type prefsEl struct {
	Default string  `xml:"default,attr"`
	Always  jidList `xml:"always"`
	Never   jidList `xml:"never"`
}

// jidList is the <always/> or <never/> list of a <prefs/>.
type jidList struct {
	JIDs []string `xml:"jid"`
}

// setPrefs replaces the owner's preferences and answers with them.
func (m *Module) setPrefs(ctx context.Context, iq *treff.Stanza, owner jid.JID) ([]byte, error) {
	var el prefsEl
	if err := iq.DecodePayload(&el); err != nil {
		return nil, badRequest("malformed preferences")
	}
	p := storage.ArchivePrefs{Default: storage.ArchiveDefault(el.Default)}
	switch p.Default {
	case storage.ArchiveAlways, storage.ArchiveNever, storage.ArchiveRoster:
	default:
		return nil, badRequest("default must be always, never or roster")
	}
	for _, l := range []struct {
		in  []string
		out *[]string
	}{{el.Always.JIDs, &p.Always}, {el.Never.JIDs, &p.Never}} {
		for _, s := range l.in {
			j, err := jid.Parse(string(bytes.TrimSpace([]byte(s))))
			if err != nil {
				return nil, stanza.JIDMalformed.WithText("not a JID: " + s)
			}
			if !slices.Contains(*l.out, j.String()) {
				*l.out = append(*l.out, j.String())
			}
		}
	}
	if err := m.Store.SetArchivePrefs(ctx, owner.String(), p); err != nil {
		return nil, err
	}
	return m.appendPrefs(nil, p), nil
}

// appendPrefs appends a <prefs/> element; an unset default is shown as
// the server's.
func (m *Module) appendPrefs(b []byte, p storage.ArchivePrefs) []byte {
	b = append(b, "<prefs xmlns='"+NS+"' default='"...)
	b = append(b, m.defaultFor(p)...)
	b = append(b, "'>"...)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.Always}, {"never", p.Never}} {
		b = append(b, '<')
		b = append(b, l.name...)
		b = append(b, '>')
		for _, j := range l.jids {
			b = append(b, "<jid>"...)
			b = treff.AppendEscaped(b, j)
			b = append(b, "</jid>"...)
		}
		b = append(b, "</"...)
		b = append(b, l.name...)
		b = append(b, '>')
	}
	return append(b, "</prefs>"...)
}
