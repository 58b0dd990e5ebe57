package router

import (
	"fmt"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"
)

type entry struct {
	j     jid.JID
	avail bool
	prio  int
}

func (e *entry) JID() jid.JID    { return e.j }
func (e *entry) Available() bool { return e.avail }
func (e *entry) Priority() int   { return e.prio }

func e(full string, avail bool, prio int) *entry {
	return &entry{j: jid.MustParse(full), avail: avail, prio: prio}
}

func names(es []Entry) []string {
	var out []string
	for _, x := range es {
		out = append(out, x.JID().Resourcepart())
	}
	return out
}

func TestSelectBare(t *testing.T) {
	a := e("u@h/a", true, 5)
	b := e("u@h/b", true, 1)
	c := e("u@h/c", true, 5)
	neg := e("u@h/neg", true, -1)
	off := e("u@h/off", false, 10)
	for _, tc := range []struct {
		name      string
		sessions  []Entry
		kind      Kind
		typ       string
		want      []string
		act, fall Action
	}{
		{"chat highest", []Entry{a, b}, Message, "chat", []string{"a"}, Deliver, 0},
		{"normal ties go to all", []Entry{a, b, c}, Message, "", []string{"a", "c"}, Deliver, 0},
		{"negative never", []Entry{neg}, Message, "chat", nil, Undeliverable, ErrorReply},
		{"unavailable never", []Entry{off}, Message, "chat", nil, Undeliverable, ErrorReply},
		{"nobody online", nil, Message, "normal", nil, Undeliverable, ErrorReply},
		{"headline to all non-negative", []Entry{a, b, neg, off}, Message, "headline", []string{"a", "b"}, Deliver, 0},
		{"headline nobody", []Entry{neg}, Message, "headline", nil, Undeliverable, Drop},
		{"groupchat to bare", []Entry{a}, Message, "groupchat", nil, ErrorReply, 0},
		{"error dropped", []Entry{a}, Message, "error", nil, Drop, 0},
		{"presence to all available", []Entry{a, neg, off}, Presence, "", []string{"a", "neg"}, Deliver, 0},
		{"presence nobody", nil, Presence, "subscribe", nil, Drop, 0},
		{"iq handled by server", []Entry{a}, IQ, "get", nil, Handle, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, act, fall := SelectBare(nil, tc.sessions, tc.kind, tc.typ)
			if fmt.Sprint(names(got)) != fmt.Sprint(tc.want) || act != tc.act || fall != tc.fall {
				t.Errorf("got %v %v %v, want %v %v %v", names(got), act, fall, tc.want, tc.act, tc.fall)
			}
		})
	}
}

func TestSelectFull(t *testing.T) {
	a := e("u@h/a", true, 5)
	for _, tc := range []struct {
		target    Entry
		kind      Kind
		typ       string
		act, fall Action
	}{
		{a, Message, "chat", Deliver, 0},
		{a, IQ, "get", Deliver, 0},
		{nil, Message, "chat", Undeliverable, 0},
		{nil, Message, "normal", Undeliverable, 0},
		{nil, Message, "headline", Drop, 0},
		{nil, Message, "groupchat", ErrorReply, 0},
		{nil, Message, "error", Drop, 0},
		{nil, IQ, "get", ErrorReply, 0},
		{nil, IQ, "result", Drop, 0},
		{nil, Presence, "", Drop, 0},
	} {
		act, fall := SelectFull(tc.target, tc.kind, tc.typ)
		if act != tc.act || fall != tc.fall {
			t.Errorf("%v %v %q: got %v %v, want %v %v", tc.target != nil, tc.kind, tc.typ, act, fall, tc.act, tc.fall)
		}
	}
}

func TestLocalTable(t *testing.T) {
	var tab Local
	a1 := e("alice@h/1", true, 0)
	a2 := e("alice@h/2", true, 0)
	if old := tab.Add(a1); old != nil {
		t.Fatal("unexpected replace")
	}
	tab.Add(a2)
	a1b := e("alice@h/1", true, 0)
	if old := tab.Add(a1b); old != a1 {
		t.Fatalf("replace returned %v", old)
	}
	if tab.Len() != 2 {
		t.Fatalf("len %d", tab.Len())
	}
	if tab.Remove(a1) {
		t.Error("removed a replaced entry")
	}
	if got := tab.Lookup(jid.MustParse("alice@h/1")); got != a1b {
		t.Errorf("lookup %v", got)
	}
	if got := tab.Resources(nil, jid.MustParse("alice@h")); len(got) != 2 {
		t.Errorf("resources %v", names(got))
	}
	tab.Remove(a1b)
	tab.Remove(a2)
	if tab.Len() != 0 || len(tab.Resources(nil, jid.MustParse("alice@h"))) != 0 {
		t.Error("not empty")
	}
}

func TestLocalTableConcurrent(t *testing.T) {
	var tab Local
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				x := e(fmt.Sprintf("u%d@h/r%d", i%10, g), true, 0)
				tab.Add(x)
				tab.Resources(nil, x.JID().Bare())
				tab.Lookup(x.JID())
				tab.Remove(x)
			}
		}()
	}
	wg.Wait()
	if tab.Len() != 0 {
		t.Errorf("len %d", tab.Len())
	}
}

func BenchmarkLookup(b *testing.B) {
	var tab Local
	for i := 0; i < 10000; i++ {
		tab.Add(e(fmt.Sprintf("u%d@h/r", i), true, 0))
	}
	bare := jid.MustParse("u5000@h")
	b.ReportAllocs()
	var in, out [4]Entry
	for i := 0; i < b.N; i++ {
		SelectBare(out[:0], tab.Resources(in[:0], bare), Message, "chat")
	}
}
