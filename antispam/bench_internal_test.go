package antispam

import (
	"context"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ratelimit"
)

// BenchmarkCheckMessage is the limits' cost on the chat hot path: one
// message of an established account, within its limit.
func BenchmarkCheckMessage(b *testing.B) {
	m := &Limits{Messages: ratelimit.Limit{N: 1 << 30, Period: time.Minute}}
	st, err := treff.NewStanza([]byte("<message from='alice@localhost/r' to='bob@localhost' type='chat'><body>hi</body></message>"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if m.check(ctx, st) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkFilterOff is the stranger filter's cost on a message to a
// user who filters nothing (the default), and on one the user sends.
func BenchmarkFilterOff(b *testing.B) {
	f := &Filter{Default: Off}
	in, _ := treff.NewStanza([]byte("<message from='alice@localhost/r' to='bob@localhost' type='chat'><body>hi</body></message>"))
	out, _ := treff.NewStanza([]byte("<message from='bob@localhost/r' to='alice@localhost' type='chat'><body>hi</body></message>"))
	f.modes.put(in.To, "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if f.inbound(ctx, in) || f.outbound(ctx, out) {
			b.Fatal("filtered")
		}
	}
}
