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
