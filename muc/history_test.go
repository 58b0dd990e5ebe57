package muc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage/memstore"
)

// TestSaveHistory: with SaveHistory, a persistent room stores its recent
// history after new messages, while the server runs (a crash keeps it);
// a later store of its configuration keeps it too.
func TestSaveHistory(t *testing.T) {
	store := memstore.New()
	ts := newServer(t, &muc.Module{Store: store, SaveHistory: 20 * time.Millisecond})
	alice := open(t, ts)
	alice.Send("<iq type='set' id='p' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")
	alice.Expect(`id='p'`)
	for _, id := range []string{"one", "two"} {
		alice.Send("<message to='" + room + "' type='groupchat' id='" + id + "'><body>" + id + "</body></message>")
		alice.Expect(`id='` + id + `'`)
	}
	ctx := context.Background()
	stored := func() []string {
		r, err := store.Room(ctx, room)
		if err != nil {
			return nil
		}
		var out []string
		for _, h := range r.History {
			out = append(out, h.Content)
		}
		return out
	}
	var got []string
	for range 500 {
		if got = stored(); len(got) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 2 || !strings.Contains(got[0], "one") || !strings.Contains(got[1], "two") {
		t.Fatalf("stored history %q, want the two messages", got)
	}
	// A configuration change stores the room with its history.
	alice.Send("<iq type='set' id='n' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='muc#roomconfig_roomname'><value>Renamed</value></field></x></query></iq>")
	alice.Expect(`id='n'`)
	r, err := store.Room(ctx, room)
	if err != nil || r.Name != "Renamed" || len(r.History) != 2 {
		t.Errorf("after the configuration change the room is stored as %+v (%v), want its name and two messages", r, err)
	}
}
