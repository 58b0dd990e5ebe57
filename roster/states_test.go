package roster

import (
	"testing"

	"github.com/treff-im/treff/storage"
)

// The nine states of RFC 6121 Appendix A.1.
var (
	none   = State{Sub: storage.SubNone}
	nonePO = State{Sub: storage.SubNone, PendingOut: true}
	nonePI = State{Sub: storage.SubNone, PendingIn: true}
	noneIO = State{Sub: storage.SubNone, PendingOut: true, PendingIn: true}
	to     = State{Sub: storage.SubTo}
	toPI   = State{Sub: storage.SubTo, PendingIn: true}
	from   = State{Sub: storage.SubFrom}
	fromPO = State{Sub: storage.SubFrom, PendingOut: true}
	both   = State{Sub: storage.SubBoth}
)

type outRow struct {
	in, want State
	route    bool
}

func checkOut(t *testing.T, section, typ string, rows []outRow) {
	t.Helper()
	if len(rows) != 9 {
		t.Fatalf("%s: %d rows, want all 9 states", section, len(rows))
	}
	for _, r := range rows {
		got, route := Outbound(r.in, typ, false)
		if got != r.want || route != r.route {
			t.Errorf("%s outbound %s from %s: got %s route=%v, want %s route=%v", section, typ, r.in, got, route, r.want, r.route)
		}
	}
}

func TestOutboundTables(t *testing.T) {
	checkOut(t, "A.2.1", "subscribe", []outRow{
		{none, nonePO, true}, {nonePO, nonePO, true}, {nonePI, noneIO, true},
		{noneIO, noneIO, true}, {to, to, true}, {toPI, toPI, true},
		{from, fromPO, true}, {fromPO, fromPO, true}, {both, both, true},
	})
	checkOut(t, "A.2.2", "unsubscribe", []outRow{
		{none, none, true}, {nonePO, none, true}, {nonePI, nonePI, true},
		{noneIO, nonePI, true}, {to, none, true}, {toPI, nonePI, true},
		{from, from, true}, {fromPO, from, true}, {both, from, true},
	})
	checkOut(t, "A.2.3", "subscribed", []outRow{
		{none, none, false}, {nonePO, nonePO, false}, {nonePI, from, true},
		{noneIO, fromPO, true}, {to, to, false}, {toPI, both, true},
		{from, from, false}, {fromPO, fromPO, false}, {both, both, false},
	})
	checkOut(t, "A.2.4", "unsubscribed", []outRow{
		{none, none, false}, {nonePO, nonePO, false}, {nonePI, none, true},
		{noneIO, nonePO, true}, {to, to, false}, {toPI, to, true},
		{from, none, true}, {fromPO, nonePO, true}, {both, to, true},
	})
}

type inRow struct {
	in, want State
	deliver  bool
	auto     string
}

func checkIn(t *testing.T, section, typ string, rows []inRow) {
	t.Helper()
	if len(rows) != 9 {
		t.Fatalf("%s: %d rows, want all 9 states", section, len(rows))
	}
	for _, r := range rows {
		got := Inbound(r.in, typ)
		if got.Next != r.want || got.Deliver != r.deliver || got.AutoReply != r.auto || got.Changed != (r.in != r.want) {
			t.Errorf("%s inbound %s in %s: got %+v, want %s deliver=%v auto=%q", section, typ, r.in, got, r.want, r.deliver, r.auto)
		}
	}
}

func TestInboundTables(t *testing.T) {
	checkIn(t, "A.3.1", "subscribe", []inRow{
		{none, nonePI, true, ""}, {nonePO, noneIO, true, ""}, {nonePI, nonePI, false, ""},
		{noneIO, noneIO, false, ""}, {to, toPI, true, ""}, {toPI, toPI, false, ""},
		{from, from, false, "subscribed"}, {fromPO, fromPO, false, "subscribed"}, {both, both, false, "subscribed"},
	})
	checkIn(t, "A.3.2", "unsubscribe", []inRow{
		{none, none, false, ""}, {nonePO, nonePO, false, ""}, {nonePI, none, true, ""},
		{noneIO, nonePO, true, ""}, {to, to, false, ""}, {toPI, to, true, ""},
		{from, none, true, ""}, {fromPO, nonePO, true, ""}, {both, to, true, ""},
	})
	checkIn(t, "A.3.3", "subscribed", []inRow{
		{none, none, false, ""}, {nonePO, to, true, ""}, {nonePI, nonePI, false, ""},
		{noneIO, toPI, true, ""}, {to, to, false, ""}, {toPI, toPI, false, ""},
		{from, from, false, ""}, {fromPO, both, true, ""}, {both, both, false, ""},
	})
	checkIn(t, "A.3.4", "unsubscribed", []inRow{
		{none, none, false, ""}, {nonePO, none, true, ""}, {nonePI, nonePI, false, ""},
		{noneIO, nonePI, true, ""}, {to, none, true, ""}, {toPI, nonePI, true, ""},
		{from, from, false, ""}, {fromPO, from, true, ""}, {both, from, true, ""},
	})
}

// RFC 6121 3.4: a subscribed without a pending request is a pre-approval
// that answers the contact's later subscribe automatically.
func TestPreApprovalStates(t *testing.T) {
	for _, tc := range []struct{ in, approved, after State }{
		{none, State{Sub: storage.SubNone, Approved: true}, from},
		{nonePO, State{Sub: storage.SubNone, PendingOut: true, Approved: true}, fromPO},
		{to, State{Sub: storage.SubTo, Approved: true}, both},
	} {
		got, route := Outbound(tc.in, "subscribed", true)
		if got != tc.approved || route {
			t.Errorf("pre-approve in %s: got %s route=%v", tc.in, got, route)
		}
		r := Inbound(got, "subscribe")
		if r.Next != tc.after || r.AutoReply != "subscribed" || r.Deliver {
			t.Errorf("subscribe after pre-approval in %s: %+v", tc.in, r)
		}
		if w, _ := Outbound(got, "unsubscribed", true); w.Approved {
			t.Errorf("unsubscribed did not withdraw the pre-approval in %s", tc.in)
		}
	}
}

// Walk random exchanges between alice and bob and check that alice's
// subscription to bob and bob's from-subscription of alice agree whenever
// nothing is in flight.
func TestStatesAgree(t *testing.T) {
	types := []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed"}
	seed := uint32(1)
	rnd := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>16) % n }
	for run := 0; run < 2000; run++ {
		a, b := none, none // a: alice's item for bob; b: bob's item for alice
		for step := 0; step < 12; step++ {
			typ := types[rnd(4)]
			if rnd(2) == 0 {
				var route bool
				if a, route = Outbound(a, typ, true); route {
					r := Inbound(b, typ)
					b = r.Next
					if r.AutoReply != "" {
						a = Inbound(a, r.AutoReply).Next
					}
				}
			} else {
				var route bool
				if b, route = Outbound(b, typ, true); route {
					r := Inbound(a, typ)
					a = r.Next
					if r.AutoReply != "" {
						b = Inbound(b, r.AutoReply).Next
					}
				}
			}
			if a.to() != b.from() || b.to() != a.from() {
				t.Fatalf("run %d step %d: alice %s, bob %s disagree", run, step, a, b)
			}
			if a.PendingOut != b.PendingIn && !b.Approved && !a.to() {
				t.Fatalf("run %d step %d: alice %s pending out, bob %s", run, step, a, b)
			}
		}
	}
}
