package muc_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// gatedRooms is a room store whose lookups of one room (and stores of
// another) wait until the test lets them go on; entered says when one
// started.
type gatedRooms struct {
	storage.Rooms
	lookup  string        // the room whose Room call waits
	put     string        // the room whose PutRoom call waits
	entered chan string   // "room <jid>" or "put <jid>" when one starts waiting
	release chan struct{} // closed: the waiting calls go on
	once    sync.Once
}

func newGatedRooms(lookup, put string) *gatedRooms {
	return &gatedRooms{Rooms: memstore.New(), lookup: lookup, put: put, entered: make(chan string, 16), release: make(chan struct{})}
}

// open lets the waiting calls go on.
func (g *gatedRooms) open() { g.once.Do(func() { close(g.release) }) }

func (g *gatedRooms) Room(ctx context.Context, j string) (storage.Room, error) {
	if j == g.lookup {
		g.entered <- "room " + j
		<-g.release
	}
	return g.Rooms.Room(ctx, j)
}

func (g *gatedRooms) PutRoom(ctx context.Context, r storage.Room) error {
	if r.JID == g.put {
		g.entered <- "put " + r.JID
		<-g.release
	}
	return g.Rooms.PutRoom(ctx, r)
}

// waitFor receives what ch says next and checks it; the watchdog only
// turns a hang into a failure.
func waitFor(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q never happened", want)
	}
}

// talk has bob join room (opened by alice, who sees him) and say
// something that both hear.
func talk(t *testing.T, ts *trefftest.Server, alice *trefftest.Client, text string) {
	t.Helper()
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<subject>`)
	alice.Expect(`<presence from='` + room + `/Bob'`)
	bob.Send("<message to='" + room + "' type='groupchat' id='t'><body>" + text + "</body></message>")
	alice.Expect(`<message from='` + room + `/Bob' to='alice@localhost/r' type='groupchat' id='t'><body>` + text + `</body>`)
	bob.Expect(`<body>` + text + `</body>`)
}

// While the store takes its time to say that one room does not exist,
// the other rooms go on (issue 14).
func TestSlowLookupStallsNoOtherRoom(t *testing.T) {
	const ghost = "ghost@conference.localhost"
	g := newGatedRooms(ghost, "")
	ts := newServer(t, &muc.Module{Store: g})
	t.Cleanup(g.open) // before the server stops, also on failure

	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<presence to='" + ghost + "/Dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	waitFor(t, g.entered, "room "+ghost)

	// The lookup of the ghost room hangs: lobby is created, joined and
	// talked in meanwhile.
	alice := open(t, ts)
	talk(t, ts, alice, "still here")

	g.open()
	dave.Expect(`<presence from='` + ghost + `/Dave' to='dave@localhost/r'>.*?<status code='110'/><status code='201'/>`)
}

// While a room's configuration is being stored, neither the room list
// nor the other rooms wait for it.
func TestSlowStoreStallsNoOtherRoom(t *testing.T) {
	const slow = "slow@conference.localhost"
	g := newGatedRooms("", slow)
	ts := newServer(t, &muc.Module{Store: g})
	t.Cleanup(g.open)

	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<presence to='" + slow + "/Dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	dave.Expect(`<status code='201'/>`)
	dave.Send("<iq type='set' id='p' to='" + slow + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")
	waitFor(t, g.entered, "put "+slow)

	carol := ts.Login(t, "carol", "pw", "r")
	carol.Send("<iq type='get' id='l' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	carol.Expect(`<iq type='result' id='l'`)
	alice := open(t, ts)
	talk(t, ts, alice, "not waiting")

	g.open()
	// Acknowledged means stored: the answer comes after the store.
	dave.Expect(`<iq type='result' id='p'`)
	if _, err := g.Rooms.Room(t.Context(), slow); err != nil {
		t.Errorf("the configured room is not stored: %v", err)
	}
}

// Two occupants talking at once: every occupant hears the room's
// messages in one order.
func TestConcurrentMessagesKeepOneOrder(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	clients := []*trefftest.Client{alice}
	for _, u := range []string{"bob", "carol"} {
		c := ts.Login(t, u, "pw", "r")
		join(c, strings.ToUpper(u[:1])+u[1:], "<history maxstanzas='0'/>")
		c.Expect(`<subject>`)
		clients = append(clients, c)
	}
	const n = 30
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			var b strings.Builder
			for k := range n {
				fmt.Fprintf(&b, "<message to='%s' type='groupchat' id='c%d-%d'><body>x</body></message>", room, i, k)
			}
			if _, err := c.Write([]byte(b.String())); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	idRE := regexp.MustCompile(`type='groupchat' id='(c\d-\d+)'`)
	var first []string
	for i, c := range clients {
		var got []string
		for len(got) < n*len(clients) {
			m := c.Expect(`type='groupchat' id='c\d-\d+'`)
			got = append(got, idRE.FindStringSubmatch(m)[1])
		}
		if i == 0 {
			first = got
			continue
		}
		if strings.Join(got, " ") != strings.Join(first, " ") {
			t.Errorf("client %d heard\n%v\nclient 0 heard\n%v", i, got, first)
		}
	}
}
