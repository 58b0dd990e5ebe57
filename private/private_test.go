package private_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/private"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

func newServer(t *testing.T, m *private.Module) *trefftest.Server {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	return ts
}

const prefs = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet &amp; co</defaultnick><x:y xmlns:x='urn:x'>z</x:y></exodus>"

func TestSetGet(t *testing.T) {
	ts := newServer(t, &private.Module{})
	a := ts.Login(t, "alice", "pw", "r")

	// Nothing stored: the empty element comes back.
	a.Send("<iq type='get' id='g0'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	a.Expect(`<iq type='result' id='g0'[^>]*><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>`)

	a.Send("<iq type='set' id='s1'><query xmlns='jabber:iq:private'>" + prefs + "</query></iq>")
	a.Expect(`<iq type='result' id='s1'[^>]*/>`)
	// Addressed to the own bare JID works the same.
	a.Send("<iq type='get' id='g1' to='alice@localhost'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	a.Expect(`<iq type='result' id='g1'[^>]*><query xmlns='jabber:iq:private'>` + regexpQuote(prefs) + `</query></iq>`)

	// Another element in the same namespace, and several in one set.
	a.Send("<iq type='set' id='s2'><query xmlns='jabber:iq:private'><a xmlns='urn:test'>1</a><b xmlns='urn:test'>2</b></query></iq>")
	a.Expect(`<iq type='result' id='s2'`)
	a.Send("<iq type='get' id='g2'><query xmlns='jabber:iq:private'><b xmlns='urn:test'/></query></iq>")
	a.Expect(`id='g2'[^>]*><query xmlns='jabber:iq:private'><b xmlns='urn:test'>2</b></query>`)

	// Stored per user: bob has nothing.
	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<iq type='get' id='g3'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	b.Expect(`id='g3'[^>]*><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>`)

	// A replaced document.
	a.Send("<iq type='set' id='s3'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>")
	a.Expect(`id='s3'`)
	got, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", private.Key("exodus", "exodus:prefs"))
	if err != nil || string(got) != "<exodus xmlns='exodus:prefs'/>" {
		t.Errorf("stored %q, %v", got, err)
	}
}

// regexpQuote escapes the regular expression metacharacters used in the
// test documents.
func regexpQuote(s string) string {
	r := strings.NewReplacer(".", `\.`, "*", `\*`, "+", `\+`, "?", `\?`, "(", `\(`, ")", `\)`, "[", `\[`, "]", `\]`, "{", `\{`, "}", `\}`, "|", `\|`, "^", `\^`, "$", `\$`)
	return r.Replace(s)
}

func TestErrors(t *testing.T) {
	ts := newServer(t, &private.Module{MaxSize: 100})
	a := ts.Login(t, "alice", "pw", "r")
	for _, tc := range []struct{ name, in, want string }{
		{"other user", "<iq type='get' id='e' to='bob@localhost'><query xmlns='jabber:iq:private'><a xmlns='urn:a'/></query></iq>", `<forbidden `},
		{"other user set", "<iq type='set' id='e' to='bob@localhost'><query xmlns='jabber:iq:private'><a xmlns='urn:a'/></query></iq>", `<forbidden `},
		{"empty get", "<iq type='get' id='e'><query xmlns='jabber:iq:private'/></iq>", `<bad-request `},
		{"empty set", "<iq type='set' id='e'><query xmlns='jabber:iq:private'/></iq>", `<bad-request `},
		{"get of two", "<iq type='get' id='e'><query xmlns='jabber:iq:private'><a xmlns='urn:a'/><b xmlns='urn:a'/></query></iq>", `<bad-request `},
		{"jabber:client", "<iq type='set' id='e'><query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query></iq>", `<not-acceptable `},
		{"vcard-temp", "<iq type='set' id='e'><query xmlns='jabber:iq:private'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></query></iq>", `<not-acceptable `},
		{"jabber.org", "<iq type='get' id='e'><query xmlns='jabber:iq:private'><query xmlns='http://jabber.org/protocol/disco#info'/></query></iq>", `<not-acceptable `},
		{"no namespace", "<iq type='set' id='e'><query xmlns='jabber:iq:private'><a>x</a></query></iq>", `<not-acceptable `},
		{"prefix from outside", "<iq type='set' id='e'><query xmlns='jabber:iq:private' xmlns:p='urn:p'><a xmlns='urn:a'><p:b/></a></query></iq>", `<bad-request `},
		{"too large", "<iq type='set' id='e'><query xmlns='jabber:iq:private'><a xmlns='urn:a'>" + strings.Repeat("x", 100) + "</a></query></iq>", `<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>an element may have at most 100 bytes`},
	} {
		a.Send(tc.in)
		a.Expect(`<iq type='error' id='e'[^>]*><error type='[a-z]+'>` + tc.want)
	}
	// Nothing of the refused sets was stored.
	if got, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", private.Key("a", "urn:a")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("refused set stored %q, %v", got, err)
	}
}

func TestAccountDeleted(t *testing.T) {
	ts := newServer(t, &private.Module{})
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='set' id='s'><query xmlns='jabber:iq:private'><a xmlns='urn:a'/><b xmlns='urn:b'/></query></iq>")
	a.Expect(`id='s'`)
	if err := ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{private.Key("a", "urn:a"), private.Key("b", "urn:b")} {
		if got, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", k); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s after account deletion: %q, %v", k, got, err)
		}
	}
}

// fakeBookmarks is a BookmarkStore in memory.
type fakeBookmarks struct {
	mu   sync.Mutex
	docs map[string][]byte
	sets int
	fail error
}

func (f *fakeBookmarks) LegacyBookmarks(ctx context.Context, owner jid.JID) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return f.docs[owner.String()], nil
}

func (f *fakeBookmarks) SetLegacyBookmarks(ctx context.Context, owner jid.JID, storageXML []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.sets++
	f.docs[owner.String()] = append([]byte(nil), storageXML...)
	return nil
}

func TestBookmarksDelegated(t *testing.T) {
	fb := &fakeBookmarks{docs: map[string][]byte{}}
	ts := newServer(t, &private.Module{Bookmarks: fb})
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='get' id='b0'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
	a.Expect(`id='b0'[^>]*><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`)

	const bm = "<storage xmlns='storage:bookmarks'><conference name='Lounge' autojoin='true' jid='lounge@conference.localhost'><nick>alice</nick></conference></storage>"
	a.Send("<iq type='set' id='b1'><query xmlns='jabber:iq:private'>" + bm + "</query></iq>")
	a.Expect(`<iq type='result' id='b1'`)
	fb.mu.Lock()
	got := string(fb.docs["alice@localhost"])
	fb.mu.Unlock()
	if got != bm {
		t.Errorf("bookmark store got %q, want %q", got, bm)
	}
	// Not in the private store.
	if _, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", private.Key("storage", "storage:bookmarks")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("bookmarks in the private store too: %v", err)
	}
	a.Send("<iq type='get' id='b2'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
	a.Expect(`id='b2'[^>]*><query xmlns='jabber:iq:private'>` + regexpQuote(bm) + `</query>`)

	// Other elements of the namespace stay in the store.
	a.Send("<iq type='set' id='b3'><query xmlns='jabber:iq:private'><other xmlns='storage:bookmarks'/></query></iq>")
	a.Expect(`<iq type='result' id='b3'`)
	if _, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", private.Key("other", "storage:bookmarks")); err != nil {
		t.Errorf("other element not stored: %v", err)
	}

	// The bookmark store's refusals reach the client.
	fb.mu.Lock()
	fb.fail = stanza.NotAcceptable.WithText("bad bookmark")
	fb.mu.Unlock()
	a.Send("<iq type='set' id='b4'><query xmlns='jabber:iq:private'>" + bm + "</query></iq>")
	a.Expect(`<iq type='error' id='b4'[^>]*><error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>bad bookmark`)
	fb.mu.Lock()
	fb.fail = errors.New("disk on fire")
	fb.mu.Unlock()
	a.Send("<iq type='get' id='b5'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
	a.Expect(`<iq type='error' id='b5'[^>]*><error type='cancel'><internal-server-error `)
}

func TestNeedsStorage(t *testing.T) {
	// A store with only the core interfaces.
	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Storage: struct{ storage.Store }{memstore.New()},
		Modules: []treff.Module{&private.Module{}}}
	if err := srv.Setup(); err == nil || !strings.Contains(err.Error(), "storage.PrivateXML") {
		t.Errorf("Setup without storage: %v", err)
	}
}

// The feature is on the server's disco#info too, where clients such as
// poezio look for it.
func TestHostFeature(t *testing.T) {
	ts := newServer(t, &private.Module{})
	if err := ts.Server.Setup(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ts.Server.Features(false), private.NS) || !slices.Contains(ts.Server.Features(true), private.NS) {
		t.Errorf("jabber:iq:private not on the host and the account: %v / %v", ts.Server.Features(false), ts.Server.Features(true))
	}
}
