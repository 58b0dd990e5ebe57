package treff

import (
	"math"
	"testing"
)

// ok reports an ack's verdict, for the tests that do not keep.
func (m *smState) ok(h uint32) bool {
	_, ok := m.ack(h)
	return ok
}

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
	if !m.ok(math.MaxUint32) { // acknowledges 2
		t.Fatal("ack before the wrap refused")
	}
	if len(m.unacked) != 3 || m.unacked[0][0] != 'c' || m.bytes != 3 {
		t.Fatalf("after ack(2^32-1): %q, %d bytes", m.unacked, m.bytes)
	}
	if !m.ok(1) { // across the wrap: 2 more
		t.Fatal("ack across the wrap refused")
	}
	if len(m.unacked) != 1 || m.unacked[0][0] != 'e' {
		t.Fatalf("after ack(1): %q", m.unacked)
	}
	if m.ok(3) {
		t.Fatal("ack of more than was sent accepted")
	}
	if m.acked != 1 || len(m.unacked) != 1 {
		t.Fatal("a refused ack changed the state")
	}
	if m.ok(0) {
		t.Fatal("an ack going backwards (a huge count, mod 2^32) was accepted")
	}
	if !m.ok(2) || m.unacked != nil || m.bytes != 0 {
		t.Fatalf("final ack: %q %d", m.unacked, m.bytes)
	}
}

// Keys follow their stanzas through acknowledgements: the ack returns
// the ids of the kept stanzas it covers, and the list is dropped once
// nothing kept is left.
func TestSMKeys(t *testing.T) {
	var m smState
	m.on = true
	for i := range 4 {
		if e := m.sent([]byte{byte('a' + i)}, 1<<20); e != nil {
			t.Fatal(e)
		}
	}
	m.setKey(1, 11)
	m.setKey(3, 13)
	if e := m.sent([]byte("e"), 1<<20); e != nil {
		t.Fatal(e)
	}
	if len(m.keys) != 5 || m.keys[4] != 0 {
		t.Fatalf("keys after a send: %v", m.keys)
	}
	rel, ok := m.ack(1)
	if !ok || len(rel) != 0 {
		t.Fatalf("ack(1) = %v, %v; want nothing released", rel, ok)
	}
	rel, ok = m.ack(3)
	if !ok || len(rel) != 1 || rel[0] != 11 {
		t.Fatalf("ack(3) = %v, %v; want [11]", rel, ok)
	}
	pending, keys := m.takeUnacked()
	if len(pending) != 2 || string(pending[0]) != "d" || len(keys) != 2 || keys[0] != 13 || keys[1] != 0 {
		t.Fatalf("takeUnacked = %q %v", pending, keys)
	}
	if m.keys != nil || m.unacked != nil {
		t.Fatal("takeUnacked left state behind")
	}
	// Acknowledging the last kept stanza drops the list.
	m.sent([]byte("f"), 1<<20)
	m.setKey(0, 21)
	m.sent([]byte("g"), 1<<20)
	if rel, _ := m.ack(m.acked + 1); len(rel) != 1 || rel[0] != 21 || m.keys != nil {
		t.Fatalf("after acknowledging the only kept stanza: released %v, keys %v", rel, m.keys)
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
