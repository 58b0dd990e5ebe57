package pie_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/internal/scram"
	"github.com/treff-im/treff/pie"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

const (
	alice = "alice@example.org"
	bob   = "bob@example.org"
	carol = "carol@elsewhere.net"
	dave  = "dave@example.org"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fill stores a user with everything the format carries, and a room.
func fill(t *testing.T, ctx context.Context, s *memstore.Store) {
	t.Helper()
	a := &auth.Store{Accounts: s}
	must(t, a.CreateUser(ctx, alice, "alice-pw"))
	must(t, a.CreateUser(ctx, bob, "bob-pw"))
	// bob is suspended; Treff's own attributes carry that.
	acct, err := s.Account(ctx, bob)
	must(t, err)
	acct.Created = time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	acct.LastLogin = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	acct.Suspended = time.Date(2026, 6, 7, 8, 9, 10, 0, time.UTC)
	acct.SuspendReason = "spam & <links>"
	must(t, s.UpdateAccount(ctx, acct))
	for _, it := range []storage.RosterItem{
		{JID: bob, Name: "Bob & Co", Groups: []string{"Friends", "Work"}, Subscription: storage.SubBoth},
		{JID: carol, Subscription: storage.SubNone, PendingOut: true},
		{JID: dave, Subscription: storage.SubNone, PendingIn: true},                           // a request alone
		{JID: "erin@example.org", Name: "Erin", Subscription: storage.SubTo, PendingIn: true}, // and in the roster
	} {
		_, err := s.PutRosterItem(ctx, alice, it)
		must(t, err)
	}
	must(t, s.PutPrivateXML(ctx, alice, "vcard-temp", []byte(`<vCard xmlns="vcard-temp"><FN>Alice &lt;A&gt;</FN></vCard>`)))
	must(t, s.PutPrivateXML(ctx, alice, "{storage:bookmarks}storage", []byte(`<storage xmlns="storage:bookmarks"><conference jid="lobby@conference.example.org" autojoin="true"></conference></storage>`)))
	cfg := storage.PEPNodeConfig{AccessModel: storage.AccessOpen, PersistItems: true, MaxItems: storage.PEPMaxItemsMax, NotifyRetract: true, Title: "keys"}
	must(t, s.CreatePEPNode(ctx, alice, "urn:xmpp:avatar:metadata", storage.PEPNodeConfig{AccessModel: storage.AccessWhitelist,
		PersistItems: true, MaxItems: 1, Whitelist: []string{bob, carol}, RosterGroups: []string{"Friends"}}))
	must(t, s.CreatePEPNode(ctx, alice, "eu.siacs.conversations.axolotl.devicelist", cfg))
	must(t, s.PublishPEPItem(ctx, alice, "eu.siacs.conversations.axolotl.devicelist",
		storage.PEPItem{ID: "current", Payload: []byte(`<list xmlns="eu.siacs.conversations.axolotl"><device id="42"></device></list>`)}, 0))
	_, err = s.PushOffline(ctx, alice, storage.OfflineMessage{Received: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Stanza: []byte(`<message from="bob@example.org/phone" to="alice@example.org" type="chat"><body>hi &amp; bye</body></message>`)}, 0)
	must(t, err)
	must(t, s.PutRoom(ctx, storage.Room{JID: "lobby@conference.example.org", Name: "Lobby", Persistent: true, Public: true,
		MembersOnly: true, MaxHistory: 20, Created: time.Date(2025, 5, 6, 0, 0, 0, 0, time.UTC),
		Affiliations: map[string]storage.Affiliation{alice: storage.AffOwner, bob: storage.AffMember}}))
}

var opts = pie.Options{Domains: []string{"example.org"}, RoomServices: []string{"conference.example.org"}}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := memstore.New()
	fill(t, ctx, src)
	var file bytes.Buffer
	must(t, pie.Export(ctx, src, &file, pie.Filter{RoomServices: opts.RoomServices}))
	if strings.Contains(file.String(), "alice-pw") {
		t.Fatal("the export holds a password")
	}

	dst := memstore.New()
	sum, err := pie.Import(ctx, dst, bytes.NewReader(file.Bytes()), opts)
	must(t, err)
	if sum.Accounts != 2 || sum.Contacts != 4 || sum.VCards != 1 || sum.Private != 1 || sum.PEPNodes != 2 || sum.PEPItems != 1 || sum.Offline != 1 || sum.Rooms != 1 {
		t.Errorf("summary:\n%s", sum)
	}
	// Everything compares equal, read back through the store.
	for _, u := range []string{alice, bob} {
		a, _ := src.Account(ctx, u)
		b, err := dst.Account(ctx, u)
		must(t, err)
		if fmt.Sprint(a.Credentials) != fmt.Sprint(b.Credentials) {
			t.Errorf("%s: credentials differ", u)
		}
		a.Credentials, b.Credentials = nil, nil
		if !reflect.DeepEqual(a, b) { // Created, LastLogin, Suspended... in Treff's attributes
			t.Errorf("%s: account %+v, want %+v", u, b, a)
		}
	}
	must(t, (&auth.Store{Accounts: dst}).CheckPassword(ctx, alice, "alice-pw"))
	r1, _, _ := src.Roster(ctx, alice)
	r2, _, _ := dst.Roster(ctx, alice)
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Errorf("roster:\n got %v\nwant %v", r2, r1)
	}
	for _, k := range []string{"vcard-temp", "{storage:bookmarks}storage"} {
		doc, err := dst.PrivateXML(ctx, alice, k)
		must(t, err)
		if !strings.Contains(string(doc), "Alice &lt;A&gt;") && !strings.Contains(string(doc), `autojoin="true"`) {
			t.Errorf("%s: %s", k, doc)
		}
	}
	wl, err := dst.PEPNodeConfig(ctx, alice, "urn:xmpp:avatar:metadata")
	must(t, err)
	if want, _ := src.PEPNodeConfig(ctx, alice, "urn:xmpp:avatar:metadata"); !reflect.DeepEqual(wl, want) {
		t.Errorf("whitelist node config %+v, want %+v", wl, want)
	}
	cfg, err := dst.PEPNodeConfig(ctx, alice, "eu.siacs.conversations.axolotl.devicelist")
	must(t, err)
	if cfg.AccessModel != storage.AccessOpen || cfg.MaxItems != storage.PEPMaxItemsMax || cfg.Title != "keys" || cfg.NotifyDelete {
		t.Errorf("PEP config %+v", cfg)
	}
	items, _ := dst.PEPItems(ctx, alice, "eu.siacs.conversations.axolotl.devicelist", nil, 0)
	if len(items) != 1 || items[0].ID != "current" || !strings.Contains(string(items[0].Payload), `<device id="42">`) {
		t.Errorf("PEP items %q", items)
	}
	msgs, _ := dst.OfflineMessages(ctx, alice)
	if len(msgs) != 1 || !msgs[0].Received.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		!strings.Contains(string(msgs[0].Stanza), "<body>hi &amp; bye</body>") || strings.Contains(string(msgs[0].Stanza), "delay") ||
		!strings.Contains(string(msgs[0].Stanza), `xmlns="jabber:client"`) {
		t.Errorf("offline %+v / %s", msgs, msgs[0].Stanza)
	}
	room, err := dst.Room(ctx, "lobby@conference.example.org")
	must(t, err)
	if room.Name != "Lobby" || !room.MembersOnly || room.MaxHistory != 20 || room.Affiliations[alice] != storage.AffOwner || room.Affiliations[bob] != storage.AffMember || !room.Created.Equal(time.Date(2025, 5, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("room %+v", room)
	}

	// Exporting the copy and importing that gives the same document again
	// (the first export may differ in serialisation only: Decode writes
	// namespaces out and leaves no empty tags).
	var second, third bytes.Buffer
	must(t, pie.Export(ctx, dst, &second, pie.Filter{RoomServices: opts.RoomServices}))
	dst2 := memstore.New()
	_, err = pie.Import(ctx, dst2, bytes.NewReader(second.Bytes()), opts)
	must(t, err)
	must(t, pie.Export(ctx, dst2, &third, pie.Filter{RoomServices: opts.RoomServices}))
	if second.String() != third.String() {
		t.Errorf("export of the import's import differs:\n%s\n---\n%s", second.String(), third.String())
	}

	// Importing again changes nothing and says so.
	sum, err = pie.Import(ctx, dst, bytes.NewReader(file.Bytes()), opts)
	must(t, err)
	if sum.Accounts+sum.Contacts+sum.VCards+sum.Private+sum.PEPNodes+sum.PEPItems+sum.Offline+sum.Rooms != 0 ||
		sum.AccountsSkipped != 2 || sum.ContactsSkipped != 4 || sum.OfflineSkipped != 1 || sum.RoomsSkipped != 1 || sum.PEPSkipped != 1 {
		t.Errorf("second import:\n%s", sum)
	}
	if !strings.Contains(sum.String(), "alice@example.org: account exists") {
		t.Errorf("second import's notes:\n%s", sum)
	}
	msgs, _ = dst.OfflineMessages(ctx, alice)
	if len(msgs) != 1 {
		t.Errorf("%d offline messages after importing twice", len(msgs))
	}
}

func TestExportOneUser(t *testing.T) {
	ctx := context.Background()
	src := memstore.New()
	fill(t, ctx, src)
	var file bytes.Buffer
	must(t, pie.Export(ctx, src, &file, pie.Filter{User: bob, RoomServices: opts.RoomServices}))
	var users []string
	must(t, pie.Decode(&file, pie.DecodeOptions{}, func(e pie.Entry) error {
		if e.Room != nil {
			t.Errorf("room %s in a one-user export", e.Room.JID)
		} else {
			users = append(users, e.User.JID)
		}
		return nil
	}))
	if !slices.Equal(users, []string{bob}) {
		t.Errorf("users %q", users)
	}
	if err := pie.Export(ctx, src, io.Discard, pie.Filter{User: "nobody@example.org"}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("export of a missing user: %v", err)
	}
}

// prosodyFile is what prosody-migrator's xep0227 store writes (one file
// per user): SCRAM-SHA-1, a roster with a pending request as presence.
func prosodyFile(t *testing.T, pw string) string {
	k, err := scram.Derive(scram.SHA1, pw, []byte("0123456789abcdef"), 4096)
	must(t, err)
	b64 := base64.StdEncoding.EncodeToString
	return `<?xml version='1.0' encoding='utf-8'?><server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='Alice'>` +
		`<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><server-key>` + b64(k.ServerKey) + `</server-key><stored-key>` +
		b64(k.StoredKey) + `</stored-key><iter-count>4096</iter-count><salt>` + b64(k.Salt) + `</salt></scram-credentials>` +
		`<query xmlns='jabber:iq:roster' version='3'><item subscription='both' jid='Bob@Example.org' name='Bob'><group>Friends</group></item></query>` +
		`<presence type='subscribe' from='dave@example.org'/>` +
		`<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBO</BINVAL></PHOTO></vCard>` +
		`<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>` +
		`<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='http://jabber.org/protocol/nick'><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items' type='text-single'/>` +
		`<field var='pubsub#persist_items' type='boolean'/><field var='pubsub#access_model' type='list-single'/><field var='pubsub#notify_delete' type='boolean'><value>0</value></field></x></configure></pubsub>` +
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/nick'><item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Alice</nick></item></items></pubsub>` +
		`<archive xmlns='urn:xmpp:pie:0#mam'/>` +
		`</user></host></server-data>`
}

func TestImportProsody(t *testing.T) {
	ctx := context.Background()
	dst := memstore.New()
	sum, err := pie.Import(ctx, dst, strings.NewReader(prosodyFile(t, "pässwörd")), opts)
	must(t, err)
	if sum.Accounts != 1 || sum.Contacts != 2 || sum.VCards != 1 || sum.Private != 1 || sum.PEPNodes != 1 || sum.PEPItems != 1 || !strings.Contains(sum.String(), "message archive") {
		t.Errorf("summary:\n%s", sum)
	}
	if sum.SHA1Only != 1 || !strings.Contains(sum.String(), "1 accounts came with SCRAM-SHA-1 keys only") {
		t.Errorf("SCRAM-SHA-1 only: %d\n%s", sum.SHA1Only, sum)
	}
	// Prosody writes every field of the node's form, unset ones empty:
	// they keep the default.
	cfg, err := dst.PEPNodeConfig(ctx, alice, "http://jabber.org/protocol/nick")
	must(t, err)
	if want := pie.DefaultPEPConfig(); cfg.AccessModel != want.AccessModel || !cfg.PersistItems || cfg.MaxItems != want.MaxItems || cfg.NotifyDelete {
		t.Errorf("PEP node config %+v", cfg)
	}
	if items, _ := dst.PEPItems(ctx, alice, "http://jabber.org/protocol/nick", nil, 0); len(items) != 1 || !strings.Contains(string(items[0].Payload), ">Alice</nick>") {
		t.Errorf("PEP items %q", items)
	}
	a := &auth.Store{Accounts: dst}
	must(t, a.CheckPassword(ctx, alice, "pässwörd"))
	if err := a.CheckPassword(ctx, alice, "wrong"); err == nil {
		t.Error("a wrong password is accepted")
	}
	items, _, _ := dst.Roster(ctx, alice)
	want := []storage.RosterItem{
		{JID: bob, Name: "Bob", Groups: []string{"Friends"}, Subscription: storage.SubBoth},
		{JID: dave, Subscription: storage.SubNone, PendingIn: true},
	}
	if fmt.Sprint(items) != fmt.Sprint(want) {
		t.Errorf("roster %+v, want %+v", items, want)
	}
}

// TestImportEjabberd reads what ejabberdctl export_piefxis writes: a
// main file including one file per host, a plain password or SCRAM
// values base64-encoded twice (ejabberd 23.01).
func TestImportEjabberd(t *testing.T) {
	ctx := context.Background()
	k, err := scram.Derive(scram.SHA256, "bob-pw", []byte("saltsaltsalt"), 4096)
	must(t, err)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	twice := func(b []byte) string { return b64([]byte(b64(b))) }
	files := map[string]string{
		"20261206-224138_example_org.xml": `<?xml version='1.0' encoding='UTF-8'?><host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='example.org'>` +
			`<user name='alice' password='alice-plain'><query xmlns='jabber:iq:roster'><item jid='bob@example.org' name='B' subscription='to' ask='subscribe'/></query>` +
			`<offline-messages><message xmlns='jabber:client' from='bob@example.org/x' to='alice@example.org' type='chat'><delay xmlns='urn:xmpp:delay' from='example.org' stamp='2026-12-01T10:00:00.123456Z'/><body>x</body></message></offline-messages></user>` +
			`<user name='bob' password=''><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'><iter-count>4096</iter-count><salt>` + twice(k.Salt) +
			`</salt><server-key>` + twice(k.ServerKey) + `</server-key><stored-key>` + twice(k.StoredKey) + `</stored-key></scram-credentials></user></host>`,
	}
	main := `<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='20261206-224138_example_org.xml'/></server-data>`
	o := opts
	o.Decode.Open = func(name string) (io.ReadCloser, error) {
		f, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("no file %s", name)
		}
		return io.NopCloser(strings.NewReader(f)), nil
	}
	dst := memstore.New()
	sum, err := pie.Import(ctx, dst, strings.NewReader(main), o)
	must(t, err)
	if sum.Accounts != 2 || sum.Contacts != 1 || sum.Offline != 1 {
		t.Errorf("summary:\n%s", sum)
	}
	a := &auth.Store{Accounts: dst}
	must(t, a.CheckPassword(ctx, alice, "alice-plain"))
	must(t, a.CheckPassword(ctx, bob, "bob-pw"))
	acct, _ := dst.Account(ctx, alice)
	for _, c := range acct.Credentials {
		if bytes.Contains(c.Salt, []byte("alice-plain")) || bytes.Contains(c.StoredKey, []byte("alice-plain")) {
			t.Error("the plain password is stored")
		}
	}
	if len(acct.Credentials) < 2 {
		t.Errorf("alice's plain password gave %d credentials, want SCRAM-SHA-1 and -256", len(acct.Credentials))
	}
	items, _, _ := dst.Roster(ctx, alice)
	if len(items) != 1 || !items[0].PendingOut || items[0].Subscription != storage.SubTo {
		t.Errorf("roster %+v", items)
	}
	msgs, _ := dst.OfflineMessages(ctx, alice)
	if len(msgs) != 1 || !msgs[0].Received.Equal(time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)) {
		t.Errorf("offline %+v", msgs)
	}

	// An include that leaves the folder is refused.
	bad := strings.Replace(main, "20261206-224138_example_org.xml", "../etc/passwd", 1)
	if _, err := pie.Import(ctx, memstore.New(), strings.NewReader(bad), o); err == nil || !strings.Contains(err.Error(), "beside") {
		t.Errorf("include of ../etc/passwd: %v", err)
	}
}

func TestImportRefuses(t *testing.T) {
	ctx := context.Background()
	for name, doc := range map[string]string{
		"not pie":          `<foo/>`,
		"not well-formed":  `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'>`,
		"bad user":         `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a b@'/></host></server-data>`,
		"bad roster JID":   `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'><query xmlns='jabber:iq:roster'><item jid='x@y/z'/></query></user></host></server-data>`,
		"bad subscription": `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'><query xmlns='jabber:iq:roster'><item jid='x@y' subscription='all'/></query></user></host></server-data>`,
		"bad key length":   `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>c2FsdA==</salt><server-key>c2FsdA==</server-key><stored-key>c2FsdA==</stored-key></scram-credentials></user></host></server-data>`,
	} {
		if _, err := pie.Import(ctx, memstore.New(), strings.NewReader(doc), opts); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
	// Users of a domain not served are skipped, and noted.
	sum, err := pie.Import(ctx, memstore.New(), strings.NewReader(`<server-data xmlns='urn:xmpp:pie:0'><host jid='other.net'><user name='a' password='x'/></host></server-data>`), opts)
	if err != nil || sum.Accounts != 0 || sum.AccountsSkipped != 1 || !strings.Contains(sum.String(), "a@other.net: its domain is not served here") {
		t.Errorf("user of another domain: %v\n%s", err, sum)
	}
}
