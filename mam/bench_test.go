package mam

import (
	"context"
	"path/filepath"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/trefftest"
)

// BenchmarkArchiveChat measures what the archive adds to a chat message
// between two local users, with the bbolt store: the sender's copy (the
// outbound hook) and the recipient's (the inbound hook), each with its
// preferences read, its append queued and its stanza-id added.
func BenchmarkArchiveChat(b *testing.B) {
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "treff.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	m := &Module{Store: store}
	ts := trefftest.NewServer(b, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	if err := ts.Setup(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	from, to := jid.MustParse("alice@localhost/phone"), jid.MustParse("bob@localhost/laptop")
	raw := []byte("<message type='chat' id='m1' from='alice@localhost/phone' to='bob@localhost'><body>Shall we meet at the station at nine tomorrow morning?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		st, err := treff.NewStanza(raw)
		if err != nil {
			b.Fatal(err)
		}
		st.From, st.To = from, to.Bare()
		if m.outbound(ctx, st) || m.inbound(ctx, st) {
			b.Fatal("the message was consumed")
		}
	}
}
