package pie

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlsplit"
	"github.com/treff-im/treff/storage"
)

// Filter chooses what Export writes.
type Filter struct {
	// User, if not empty, is the one account to export (a normalised
	// bare JID); rooms are not exported then.
	User string
	// Domains, if not empty, limits the export to accounts on these
	// domains.
	Domains []string
	// RoomServices are the group chat services whose rooms are exported
	// (their domains); none if empty.
	RoomServices []string
}

// Export writes the accounts (and rooms) that f chooses from store to w
// as one XEP-0227 document. Data the store keeps in an optional
// interface it lacks is left out. Exporting a user that does not exist
// is an error wrapping storage.ErrNotFound.
func Export(ctx context.Context, store storage.Store, w io.Writer, f Filter) error {
	var accts []storage.Account
	if f.User != "" {
		a, err := store.Account(ctx, f.User)
		if err != nil {
			return fmt.Errorf("pie: %s: %w", f.User, err)
		}
		accts = []storage.Account{a}
	} else {
		all, err := store.ListAccounts(ctx, "")
		if err != nil {
			return fmt.Errorf("pie: %w", err)
		}
		for _, a := range all {
			if len(f.Domains) == 0 || slices.Contains(f.Domains, domainOf(a.JID)) {
				accts = append(accts, a)
			}
		}
	}
	bw := bufio.NewWriter(w)
	e := &exporter{w: bw, ctx: ctx, store: store}
	e.s("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" + NS + "'>\n")
	// Accounts are sorted by JID, so those of one domain are together.
	slices.SortFunc(accts, func(a, b storage.Account) int {
		if c := strings.Compare(domainOf(a.JID), domainOf(b.JID)); c != 0 {
			return c
		}
		return strings.Compare(a.JID, b.JID)
	})
	cur := ""
	for _, a := range accts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pie: %w", err)
		}
		if d := domainOf(a.JID); d != cur {
			if cur != "" {
				e.s(" </host>\n")
			}
			cur = d
			e.s(" <host jid='" + esc(d) + "'>\n")
		}
		if err := e.user(a); err != nil {
			return err
		}
	}
	if cur != "" {
		e.s(" </host>\n")
	}
	if f.User == "" {
		if err := e.rooms(f.RoomServices); err != nil {
			return err
		}
	}
	e.s("</server-data>\n")
	if e.err != nil {
		return fmt.Errorf("pie: %w", e.err)
	}
	return bw.Flush()
}

func domainOf(bare string) string {
	_, d, _ := strings.Cut(bare, "@")
	return d
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), "'", "&#39;")
}

type exporter struct {
	w     *bufio.Writer
	ctx   context.Context
	store storage.Store
	err   error
}

func (e *exporter) s(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *exporter) b(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *exporter) user(a storage.Account) error {
	ctx := e.ctx
	local, _, _ := strings.Cut(a.JID, "@")
	e.s("  <user name='" + esc(local) + "'")
	attrs := ""
	for _, x := range []struct {
		name string
		t    time.Time
	}{{"created", a.Created}, {"last-login", a.LastLogin}, {"suspended", a.Suspended}, {"approved", a.Approved}} {
		if !x.t.IsZero() {
			attrs += " t:" + x.name + "='" + x.t.UTC().Format(time.RFC3339Nano) + "'"
		}
	}
	if a.SuspendReason != "" {
		attrs += " t:suspend-reason='" + esc(a.SuspendReason) + "'"
	}
	if attrs != "" {
		e.s(" xmlns:t='" + NSAccount + "'" + attrs)
	}
	e.s(">\n")
	for _, c := range a.Credentials {
		e.s("   <scram-credentials xmlns='" + NSSCRAM + "' mechanism='" + esc(c.Mechanism) + "'>")
		e.s("<iter-count>" + strconv.Itoa(c.Iterations) + "</iter-count>")
		e.s("<salt>" + base64.StdEncoding.EncodeToString(c.Salt) + "</salt>")
		e.s("<server-key>" + base64.StdEncoding.EncodeToString(c.ServerKey) + "</server-key>")
		e.s("<stored-key>" + base64.StdEncoding.EncodeToString(c.StoredKey) + "</stored-key>")
		e.s("</scram-credentials>\n")
	}
	items, _, err := e.store.Roster(ctx, a.JID)
	if err != nil {
		return fmt.Errorf("pie: roster of %s: %w", a.JID, err)
	}
	var pending []string
	shown := 0
	for _, it := range items {
		if it.PendingIn {
			pending = append(pending, it.JID)
		}
		if pendingOnly(it) {
			continue
		}
		if shown == 0 {
			e.s("   <query xmlns='" + nsRoster + "'>\n")
		}
		shown++
		e.s("    <item jid='" + esc(it.JID) + "' subscription='" + esc(string(it.Subscription)) + "'")
		if it.Name != "" {
			e.s(" name='" + esc(it.Name) + "'")
		}
		if it.PendingOut {
			e.s(" ask='subscribe'")
		}
		if it.Approved {
			e.s(" approved='true'")
		}
		e.s(">")
		for _, g := range it.Groups {
			e.s("<group>" + esc(g) + "</group>")
		}
		e.s("</item>\n")
	}
	if shown > 0 {
		e.s("   </query>\n")
	}
	for _, p := range pending {
		e.s("   <presence xmlns='" + nsClient + "' type='subscribe' from='" + esc(p) + "' to='" + esc(a.JID) + "'/>\n")
	}
	if px, ok := e.store.(storage.PrivateXML); ok {
		var keys []string
		if lister, ok := e.store.(storage.PrivateXMLKeys); ok {
			if keys, err = lister.PrivateXMLKeys(ctx, a.JID); err != nil {
				return fmt.Errorf("pie: private XML of %s: %w", a.JID, err)
			}
		} else {
			keys = []string{vcardKey} // the vCard at least
		}
		var docs [][]byte
		for _, k := range keys {
			doc, err := px.PrivateXML(ctx, a.JID, k)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("pie: private XML of %s: %w", a.JID, err)
			}
			if k == vcardKey {
				e.s("   ")
				e.b(doc)
				e.s("\n")
			} else if strings.HasPrefix(k, "{") {
				docs = append(docs, doc)
			}
		}
		if len(docs) > 0 {
			e.s("   <query xmlns='" + nsPrivate + "'>")
			for _, d := range docs {
				e.b(d)
			}
			e.s("</query>\n")
		}
	}
	if pep, ok := e.store.(storage.PEP); ok {
		if err := e.pep(pep, a.JID); err != nil {
			return err
		}
	}
	msgs, err := e.store.OfflineMessages(ctx, a.JID)
	if err != nil {
		return fmt.Errorf("pie: offline messages of %s: %w", a.JID, err)
	}
	if len(msgs) > 0 {
		e.s("   <offline-messages>\n")
		for _, m := range msgs {
			e.s("    ")
			e.b(withDelay(xmlsplit.Standalone(m.Stanza), m.Received, domainOf(a.JID)))
			e.s("\n")
		}
		e.s("   </offline-messages>\n")
	}
	e.s("  </user>\n")
	return e.err
}

// pendingOnly reports a roster item that only remembers an unanswered
// inbound request (the roster module keeps it out of the roster): the
// file has it as a <presence type='subscribe'/> alone.
func pendingOnly(it storage.RosterItem) bool {
	return it.PendingIn && !it.PendingOut && !it.Approved && it.Subscription == storage.SubNone &&
		it.Name == "" && len(it.Groups) == 0
}

// withDelay inserts a XEP-0203 delay with the arrival time as the first
// child of the message stanza.
func withDelay(stanza []byte, t time.Time, from string) []byte {
	end := xmlsplit.TagEnd(stanza, 0)
	if end < 0 {
		return stanza
	}
	delay := "<delay xmlns='" + nsDelay + "' from='" + esc(from) + "' stamp='" + t.UTC().Format("2006-01-02T15:04:05.000Z") + "'/>"
	if stanza[end-2] == '/' { // <message .../>
		out := append([]byte{}, stanza[:end-2]...)
		return append(append(out, '>'), delay+"</message>"...)
	}
	out := append([]byte{}, stanza[:end]...)
	out = append(out, delay...)
	return append(out, stanza[end:]...)
}

func (e *exporter) pep(pep storage.PEP, owner string) error {
	ctx := e.ctx
	nodes, err := pep.PEPNodes(ctx, owner)
	if err != nil {
		return fmt.Errorf("pie: PEP nodes of %s: %w", owner, err)
	}
	if len(nodes) == 0 {
		return nil
	}
	e.s("   <pubsub xmlns='" + nsPubsubOwner + "'>\n")
	for _, n := range nodes {
		cfg, err := pep.PEPNodeConfig(ctx, owner, n)
		if err != nil {
			return fmt.Errorf("pie: PEP node %s of %s: %w", n, owner, err)
		}
		e.s("    <configure node='" + esc(n) + "'><x xmlns='" + nsDataForm + "' type='submit'>")
		field := func(v string, values ...string) {
			e.s("<field var='" + v + "'>")
			for _, x := range values {
				e.s("<value>" + esc(x) + "</value>")
			}
			e.s("</field>")
		}
		bit := func(b bool) string {
			if b {
				return "1"
			}
			return "0"
		}
		field("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config")
		field("pubsub#access_model", cfg.AccessModel)
		field("pubsub#persist_items", bit(cfg.PersistItems))
		mx := "max"
		if cfg.MaxItems > 0 {
			mx = strconv.Itoa(cfg.MaxItems)
		}
		field("pubsub#max_items", mx)
		field("pubsub#notify_retract", bit(cfg.NotifyRetract))
		field("pubsub#notify_delete", bit(cfg.NotifyDelete))
		if cfg.Title != "" {
			field("pubsub#title", cfg.Title)
		}
		if len(cfg.RosterGroups) > 0 {
			field("pubsub#roster_groups_allowed", cfg.RosterGroups...)
		}
		e.s("</x></configure>\n")
		if len(cfg.Whitelist) > 0 {
			e.s("    <affiliations node='" + esc(n) + "'>")
			for _, w := range cfg.Whitelist {
				e.s("<affiliation jid='" + esc(w) + "' affiliation='member'/>")
			}
			e.s("</affiliations>\n")
		}
	}
	e.s("   </pubsub>\n   <pubsub xmlns='" + nsPubsub + "'>\n")
	for _, n := range nodes {
		items, err := pep.PEPItems(ctx, owner, n, nil, 0)
		if err != nil {
			return fmt.Errorf("pie: PEP items of %s on %s: %w", owner, n, err)
		}
		e.s("    <items node='" + esc(n) + "'>")
		for _, it := range items {
			e.s("<item id='" + esc(it.ID) + "'>")
			e.b(it.Payload)
			e.s("</item>")
		}
		e.s("</items>\n")
	}
	e.s("   </pubsub>\n")
	return e.err
}

func (e *exporter) rooms(services []string) error {
	rs, ok := e.store.(storage.Rooms)
	if !ok {
		return nil
	}
	for _, svc := range services {
		rooms, err := rs.ListRooms(e.ctx, svc)
		if err != nil {
			return fmt.Errorf("pie: rooms of %s: %w", svc, err)
		}
		if len(rooms) == 0 {
			continue
		}
		e.s(" <host jid='" + esc(svc) + "'>\n")
		for _, r := range rooms {
			j, err := jid.Parse(r.JID)
			if err != nil {
				return fmt.Errorf("pie: room %q: %w", r.JID, err)
			}
			x := roomXML{Name: j.Localpart(), Title: r.Name, Description: r.Description, Subject: r.Subject, SubjectBy: r.SubjectBy,
				Public: r.Public, MembersOnly: r.MembersOnly, Moderated: r.Moderated, NonAnonymous: r.NonAnonymous,
				Persistent: r.Persistent, Password: r.Password, MaxOccupants: r.MaxOccupants, MaxHistory: r.MaxHistory,
				OccupantsChangeSubject: r.OccupantsChangeSubject, OccupantsInvite: r.OccupantsInvite, Created: r.Created.UTC()}
			for _, who := range slices.Sorted(maps.Keys(r.Affiliations)) {
				x.Affiliations = append(x.Affiliations, struct {
					JID         string `xml:"jid,attr"`
					Affiliation string `xml:"affiliation,attr"`
				}{who, string(r.Affiliations[who])})
			}
			b, err := xml.Marshal(struct {
				XMLName xml.Name `xml:"urn:xmpp:treff:pie:room:0 room"`
				roomXML
			}{roomXML: x})
			if err != nil {
				return fmt.Errorf("pie: room %s: %w", r.JID, err)
			}
			e.s("  ")
			e.b(b)
			e.s("\n")
		}
		e.s(" </host>\n")
	}
	return e.err
}
