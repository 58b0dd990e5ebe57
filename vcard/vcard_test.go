package vcard_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"image"
	"image/png"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/vcard"
)

// newServer starts a server with the vCard and roster modules (the vCard
// module first unless after is set) and alice, bob and carol, alice and
// bob subscribed to each other.
func newServer(t *testing.T, m *vcard.Module, after bool) *trefftest.Server {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{m, &roster.Module{}}
		if after {
			s.Modules = []treff.Module{&roster.Module{}, m}
		}
	})
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	ctx := context.Background()
	ts.Store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubBoth})
	ts.Store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubBoth})
	return ts
}

// testPNG returns a w×h PNG image and the hex SHA-1 of its bytes.
func testPNG(t *testing.T, w, h int) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(b.Bytes())
	return b.Bytes(), hex.EncodeToString(sum[:])
}

// vcardWithPhoto is a vCard whose BINVAL is wrapped over lines, as some
// clients send it.
func vcardWithPhoto(img []byte) string {
	b64 := base64.StdEncoding.EncodeToString(img)
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 20 {
		wrapped.WriteString(b64[i:min(i+20, len(b64))])
		wrapped.WriteString("\n")
	}
	return "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>" + wrapped.String() + "</BINVAL></PHOTO></vCard>"
}

func TestGetSet(t *testing.T) {
	ts := newServer(t, &vcard.Module{MaxSize: 4096}, false)
	a := ts.Login(t, "alice", "pw", "r")
	b := ts.Login(t, "bob", "pw", "r")

	a.Send("<iq type='get' id='v0'><vCard xmlns='vcard-temp'/></iq>")
	a.Expect(`<iq type='result' id='v0'[^>]*><vCard xmlns='vcard-temp'/></iq>`)
	b.Send("<iq type='get' id='v1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	b.Expect(`<iq type='error' id='v1' to='bob@localhost/r' from='alice@localhost'><error type='cancel'><service-unavailable `)

	const card = "<vCard xmlns='vcard-temp'><FN>Alice ✓</FN><NICKNAME>al</NICKNAME></vCard>"
	a.Send("<iq type='set' id='v2'>" + card + "</iq>")
	a.Expect(`<iq type='result' id='v2'`)
	a.Send("<iq type='get' id='v3'><vCard xmlns='vcard-temp'/></iq>")
	a.Expect(`id='v3'[^>]*>` + regexp.QuoteMeta(card) + `</iq>`)
	b.Send("<iq type='get' id='v4' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	b.Expect(`<iq type='result' id='v4' to='bob@localhost/r' from='alice@localhost'>` + regexp.QuoteMeta(card) + `</iq>`)

	for _, tc := range []struct{ in, want string }{
		{"<iq type='set' id='e' to='alice@localhost'>" + card + "</iq>", `<error type='auth'><forbidden `},
		{"<iq type='set' id='e'><vCard xmlns='vcard-temp'><DESC>" + strings.Repeat("x", 4096) + "</DESC></vCard></iq>", `<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>a vCard may have at most 4096 bytes`},
		{"<iq type='set' id='e' xmlns:p='urn:p'><vCard xmlns='vcard-temp'><p:x/></vCard></iq>", `<error type='modify'><bad-request `},
	} {
		b.Send(tc.in)
		b.Expect(`<iq type='error' id='e'[^>]*>` + tc.want)
	}
	// bob's refused sets changed nothing of alice's.
	b.Send("<iq type='get' id='v5' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	b.Expect(`id='v5'[^>]*>` + regexp.QuoteMeta(card))

	if !slices.Contains(ts.Features(false), vcard.NS) || !slices.Contains(ts.Features(true), vcard.NS) {
		t.Errorf("vcard-temp not advertised: %v / %v", ts.Features(false), ts.Features(true))
	}
	if slices.Contains(ts.Features(true), vcard.NSConversion) {
		t.Error("conversion advertised without PEP")
	}

	if err := ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if doc, err := ts.Store.(storage.PrivateXML).PrivateXML(context.Background(), "alice@localhost", vcard.Key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("vCard after account deletion: %q, %v", doc, err)
	}
}

// presenceFrom waits for the next available presence from alice.
func presenceFrom(c *trefftest.Client, from string) string {
	m := c.Expect(`<presence[^>]* from='` + regexp.QuoteMeta(from) + `'[^>]*(/>|>.*?</presence>)`)
	return m[strings.LastIndex(m, "<presence"):]
}

func TestPresenceHash(t *testing.T) {
	img, hash := testPNG(t, 3, 2)
	update := "<x xmlns='vcard-temp:x:update'><photo>" + hash + "</photo></x>"
	for _, after := range []bool{false, true} {
		name := "VCardFirst"
		if after {
			name = "RosterFirst"
		}
		t.Run(name, func(t *testing.T) {
			ts := newServer(t, &vcard.Module{}, after)
			b := ts.Login(t, "bob", "pw", "r")
			b.Send("<presence/>")
			b.Expect(`<presence from='bob@localhost/r'`)
			a := ts.Login(t, "alice", "pw", "r")

			// No avatar yet: presence goes as it is.
			a.Send("<presence><status>no photo</status></presence>")
			if p := presenceFrom(b, "alice@localhost/r"); strings.Contains(p, "vcard-temp:x:update") {
				t.Errorf("presence of a user without avatar stamped: %s", p)
			}
			a.Send("<iq type='set' id='v'>" + vcardWithPhoto(img) + "</iq>")
			a.Expect(`<iq type='result' id='v'`)

			a.Send("<presence><status>photo</status></presence>")
			if p := presenceFrom(b, "alice@localhost/r"); !strings.Contains(p, update) || !strings.Contains(p, "<status>photo</status>") {
				t.Errorf("bob got %s, want the hash %s", p, hash)
			}
			if !after {
				// The sender's own session gets the stamped presence too.
				if p := presenceFrom(a, "alice@localhost/r"); !strings.Contains(p, update) {
					t.Errorf("alice got %s", p)
				}
			}
			// An empty <photo/> (avatar not loaded yet) is left alone.
			a.Send("<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>")
			if p := presenceFrom(b, "alice@localhost/r"); strings.Contains(p, hash) || !strings.Contains(p, "<photo/>") {
				t.Errorf("presence with <photo/>: bob got %s", p)
			}
			// The client's own hash is left alone.
			a.Send("<presence><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>")
			if p := presenceFrom(b, "alice@localhost/r"); strings.Contains(p, hash) || !strings.Contains(p, "<photo>abc</photo>") {
				t.Errorf("presence with a photo: bob got %s", p)
			}
			// An <x/> without <photo/> is replaced.
			a.Send("<presence><x xmlns='vcard-temp:x:update'/><status>s</status></presence>")
			if p := presenceFrom(b, "alice@localhost/r"); !strings.Contains(p, update) || strings.Count(p, "vcard-temp:x:update") != 1 || !strings.Contains(p, "<status>s</status>") {
				t.Errorf("presence with an empty x: bob got %s", p)
			}
			// Unavailable presence is not.
			a.Send("<presence type='unavailable'/>")
			if p := presenceFrom(b, "alice@localhost/r"); strings.Contains(p, "vcard-temp") {
				t.Errorf("unavailable presence stamped: %s", p)
			}
		})
	}
}

// TestDirectedPresenceHash: presence to a full JID (as a group chat join
// is) carries the hash.
func TestDirectedPresenceHash(t *testing.T) {
	img, hash := testPNG(t, 1, 1)
	ts := newServer(t, &vcard.Module{}, false)
	c := ts.Login(t, "carol", "pw", "x")
	c.Send("<presence/>")
	c.Expect(`<presence from='carol@localhost/x'`)
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='set' id='v'>" + vcardWithPhoto(img) + "</iq>")
	a.Expect(`<iq type='result' id='v'`)
	a.Send("<presence to='carol@localhost/x'/>")
	if p := presenceFrom(c, "alice@localhost/r"); !strings.Contains(p, "<photo>"+hash+"</photo>") {
		t.Errorf("directed presence: %s", p)
	}
}

// fakePEP keeps the last item of each node.
type fakePEP struct {
	mu        sync.Mutex
	items     map[string][2]string // owner node -> id, payload
	access    map[string]string
	published []string // node/id in order
}

func newFakePEP() *fakePEP {
	return &fakePEP{items: map[string][2]string{}, access: map[string]string{}}
}

func (f *fakePEP) LastItem(ctx context.Context, owner jid.JID, node string) (string, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[owner.String()+" "+node]
	if !ok {
		return "", nil, storage.ErrNotFound
	}
	return it[0], []byte(it[1]), nil
}

func (f *fakePEP) PublishItem(ctx context.Context, owner jid.JID, node, id string, payload []byte, accessModel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[owner.String()+" "+node] = [2]string{id, string(payload)}
	f.access[owner.String()+" "+node] = accessModel
	f.published = append(f.published, node+"/"+id)
	return nil
}

func (f *fakePEP) item(owner, node string) [2]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.items[owner+" "+node]
}

func TestVCardToPEP(t *testing.T) {
	pep := newFakePEP()
	ts := newServer(t, &vcard.Module{PEP: pep}, false)
	if !slices.Contains(ts.Features(true), vcard.NSConversion) {
		t.Errorf("account features %v lack %s", ts.Features(true), vcard.NSConversion)
	}
	img, hash := testPNG(t, 3, 2)
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='set' id='v'>" + vcardWithPhoto(img) + "</iq>")
	a.Expect(`<iq type='result' id='v'`)

	data := pep.item("alice@localhost", vcard.NodeAvatarData)
	if data[0] != hash || data[1] != "<data xmlns='urn:xmpp:avatar:data'>"+base64.StdEncoding.EncodeToString(img)+"</data>" {
		t.Errorf("data item %q", data)
	}
	meta := pep.item("alice@localhost", vcard.NodeAvatarMetadata)
	wantMeta := "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='" + itoa(len(img)) + "' id='" + hash + "' type='image/png' width='3' height='2'/></metadata>"
	if meta[0] != hash || meta[1] != wantMeta {
		t.Errorf("metadata item %q, want %q", meta, wantMeta)
	}
	pep.mu.Lock()
	if got := pep.published; !slices.Equal(got, []string{vcard.NodeAvatarData + "/" + hash, vcard.NodeAvatarMetadata + "/" + hash}) {
		t.Errorf("published %v: data must come before metadata", got)
	}
	if pep.access["alice@localhost "+vcard.NodeAvatarData] != "open" || pep.access["alice@localhost "+vcard.NodeAvatarMetadata] != "open" {
		t.Errorf("access models %v", pep.access)
	}
	pep.mu.Unlock()

	// Setting the same photo again (a new nickname) publishes nothing.
	a.Send("<iq type='set' id='v2'>" + strings.Replace(vcardWithPhoto(img), "<FN>", "<NICKNAME>al</NICKNAME><FN>", 1) + "</iq>")
	a.Expect(`<iq type='result' id='v2'`)
	pep.mu.Lock()
	if len(pep.published) != 2 {
		t.Errorf("republished the same avatar: %v", pep.published)
	}
	pep.mu.Unlock()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestPEPToVCard(t *testing.T) {
	pep := newFakePEP()
	ts := newServer(t, &vcard.Module{PEP: pep}, false)
	img, hash := testPNG(t, 4, 4)
	b64 := base64.StdEncoding.EncodeToString(img)
	ctx := context.Background()
	alice := jid.MustParse("alice@localhost")
	pep.PublishItem(ctx, alice, vcard.NodeAvatarData, hash, []byte("<data xmlns='urn:xmpp:avatar:data'>"+b64+"</data>"), "open")
	pep.PublishItem(ctx, alice, vcard.NodeAvatarMetadata, hash, []byte("<metadata xmlns='urn:xmpp:avatar:metadata'>"+
		"<info id='0000' url='https://example.org/a.png' type='image/png' bytes='1'/>"+
		"<info id='"+hash+"' type='image/png' bytes='"+itoa(len(img))+"'/></metadata>"), "open")
	photo := "<PHOTO><TYPE>image/png</TYPE><BINVAL>" + b64 + "</BINVAL></PHOTO>"

	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`<presence from='bob@localhost/r'`)
	// No vCard at all: one made of the avatar.
	b.Send("<iq type='get' id='g1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
	b.Expect(`id='g1'[^>]*><vCard xmlns='vcard-temp'>` + regexp.QuoteMeta(photo) + `</vCard></iq>`)

	// A vCard without PHOTO gets the avatar added.
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>")
	a.Expect(`<iq type='result' id='s'`)
	a.Send("<iq type='get' id='g2'><vCard xmlns='vcard-temp'/></iq>")
	a.Expect(`id='g2'[^>]*><vCard xmlns='vcard-temp'><FN>Alice</FN>` + regexp.QuoteMeta(photo) + `</vCard></iq>`)

	// Presence carries the PEP avatar's hash.
	a.Send("<presence/>")
	if p := presenceFrom(b, "alice@localhost/r"); !strings.Contains(p, "<photo>"+hash+"</photo>") {
		t.Errorf("presence %s lacks the PEP avatar's hash", p)
	}

	// A data item that does not match the metadata's hash is not used.
	pep.PublishItem(ctx, alice, vcard.NodeAvatarData, hash, []byte("<data xmlns='urn:xmpp:avatar:data'>"+base64.StdEncoding.EncodeToString([]byte("other"))+"</data>"), "open")
	a.Send("<iq type='get' id='g3'><vCard xmlns='vcard-temp'/></iq>")
	a.Expect(`id='g3'[^>]*><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`)

	// A vCard with its own PHOTO is returned as stored.
	own, ownHash := testPNG(t, 1, 1)
	a.Send("<iq type='set' id='s2'>" + vcardWithPhoto(own) + "</iq>")
	a.Expect(`<iq type='result' id='s2'`)
	a.Send("<iq type='get' id='g4'><vCard xmlns='vcard-temp'/></iq>")
	if got := a.Expect(`(?s)id='g4'.*?</iq>`); strings.Contains(got, b64) {
		t.Errorf("stored PHOTO replaced: %s", got)
	}
	// InvalidateAvatar is how a PEP service reports a new avatar.
	a.Send("<presence/>")
	if p := presenceFrom(b, "alice@localhost/r"); !strings.Contains(p, "<photo>"+ownHash+"</photo>") {
		t.Errorf("presence %s lacks the new vCard photo's hash", p)
	}
}

func TestInvalidateAvatar(t *testing.T) {
	pep := newFakePEP()
	m := &vcard.Module{PEP: pep}
	ts := newServer(t, m, false)
	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`<presence from='bob@localhost/r'`)
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<presence/>")
	if p := presenceFrom(b, "alice@localhost/r"); strings.Contains(p, "vcard-temp") {
		t.Errorf("presence without any avatar stamped: %s", p)
	}
	_, hash := testPNG(t, 2, 2)
	alice := jid.MustParse("alice@localhost")
	pep.PublishItem(context.Background(), alice, vcard.NodeAvatarMetadata, hash, []byte("<metadata xmlns='urn:xmpp:avatar:metadata'><info id='"+hash+"' type='image/png' bytes='1'/></metadata>"), "open")
	m.InvalidateAvatar(alice)
	a.Send("<presence/>")
	if p := presenceFrom(b, "alice@localhost/r"); !strings.Contains(p, "<photo>"+hash+"</photo>") {
		t.Errorf("presence after InvalidateAvatar: %s", p)
	}
}
