package muc_test

import (
	"context"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/muc"
)

func TestRoomExists(t *testing.T) {
	m := &muc.Module{}
	ts := newServer(t, m)
	ctx := context.Background()
	if err := ts.Setup(); err != nil { // waits for the modules' setup
		t.Fatal(err)
	}
	if ok, err := m.RoomExists(ctx, jid.MustParse(room)); ok || err != nil {
		t.Errorf("RoomExists before creation = %v, %v", ok, err)
	}
	open(t, ts)
	for _, j := range []string{room, room + "/Alice", "elsewhere@conference.example.org"} {
		if ok, err := m.RoomExists(ctx, jid.MustParse(j)); !ok || err != nil {
			t.Errorf("RoomExists(%s) = %v, %v", j, ok, err)
		}
	}
	if ok, _ := m.RoomExists(ctx, jid.MustParse("other@conference.localhost")); ok {
		t.Error("RoomExists(other) = true")
	}
}
