package treff

import (
	"math"
	"testing"
)

func TestSMCountersWrap(t *testing.T) {
	start := uint32(math.MaxUint32 - 2)
	m := smState{on: true, out: start, acked: start}
	for i := range 5 {
		if e := m.sent([]byte{byte('a' + i)}, 1<<20); e != nil {
			t.Fatal(e)
		}
	}
	if m.out != 2 {
		t.Fatalf("out = %d after wrapping, want 2", m.out)
	}
	if !m.ack(math.MaxUint32) { // acknowledges 2
		t.Fatal("ack before the wrap refused")
	}
	if len(m.unacked) != 3 || m.unacked[0][0] != 'c' || m.bytes != 3 {
		t.Fatalf("after ack(2^32-1): %q, %d bytes", m.unacked, m.bytes)
	}
	if !m.ack(1) { // across the wrap: 2 more
		t.Fatal("ack across the wrap refused")
	}
	if len(m.unacked) != 1 || m.unacked[0][0] != 'e' {
		t.Fatalf("after ack(1): %q", m.unacked)
	}
	if m.ack(3) {
		t.Fatal("ack of more than was sent accepted")
	}
	if m.acked != 1 || len(m.unacked) != 1 {
		t.Fatal("a refused ack changed the state")
	}
	if m.ack(0) {
		t.Fatal("an ack going backwards (a huge count, mod 2^32) was accepted")
	}
	if !m.ack(2) || m.unacked != nil || m.bytes != 0 {
		t.Fatalf("final ack: %q %d", m.unacked, m.bytes)
	}
}

func TestSMUnackedLimit(t *testing.T) {
	var m smState
	if e := m.sent(make([]byte, 100), 150); e != nil {
		t.Fatal(e)
	}
	if e := m.sent(make([]byte, 100), 150); e == nil || e.cond != "policy-violation" {
		t.Fatalf("over the byte limit: %v", e)
	}
}

func TestCSIHold(t *testing.T) {
	var c csiState
	p1 := []byte(`<presence from='bob@x/a' to='alice@x/p'><status>one</status></presence>`)
	p2 := []byte(`<presence from="bob@x/a" to='alice@x/p'><status>two</status></presence>`)
	p3 := []byte(`<presence to='alice@x/p' from='carol@x/a'/>`)
	state := []byte(`<message from='bob@x/a' to='alice@x/p' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	for _, raw := range [][]byte{p1, p3, state, p2} {
		if !c.hold(raw) {
			t.Fatalf("not held: %s", raw)
		}
	}
	for _, raw := range []string{
		`<message from='bob@x/a' to='alice@x/p' type='chat'><body>hi</body></message>`,
		`<message from='bob@x/a' to='alice@x/p'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`,
		`<presence from='bob@x' to='alice@x' type='subscribe'/>`,
		`<iq from='bob@x/a' to='alice@x/p' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<message from='alice@x' to='alice@x/p'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body></message></forwarded></received></message>`,
	} {
		if c.hold([]byte(raw)) {
			t.Errorf("held: %s", raw)
		}
	}
	// The latest presence of each sender only, in order of arrival.
	got := c.take()
	want := [][]byte{p3, state, p2}
	if len(got) != len(want) {
		t.Fatalf("held %q", got)
	}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Errorf("held[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if c.held != nil || c.bytes != 0 {
		t.Error("take left something")
	}
	// Bounded: past the limit nothing more is held.
	for i := range csiMaxHeld + 1 {
		held := c.hold([]byte(`<presence from='u` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `@x'/>`))
		if held != (i < csiMaxHeld) {
			t.Fatalf("presence %d held = %v", i, held)
		}
	}
}

func TestAttrOf(t *testing.T) {
	for _, tc := range []struct{ raw, name, want string }{
		{`<presence xfrom='a' from='b'/>`, "from", "b"},
		{`<presence from="x@y"><from>z</from></presence>`, "from", "x@y"},
		{`<presence type='unavailable'/>`, "from", ""},
		{`<message to='a'><body from='q'/></message>`, "from", ""},
	} {
		if got := string(attrOf([]byte(tc.raw), tc.name)); got != tc.want {
			t.Errorf("attrOf(%s, %s) = %q, want %q", tc.raw, tc.name, got, tc.want)
		}
	}
}
