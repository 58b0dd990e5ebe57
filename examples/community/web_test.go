package main

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/trefftest"
)

// TestBOSHSessionsPerAddress: the bosh_sessions_per_address key reaches
// the example server's /http-bind handler: with 2, a client address gets
// two sessions and the third creation request is refused with the
// policy-violation terminal condition; with 0 there is no cap.
func TestBOSHSessionsPerAddress(t *testing.T) {
	create := func(t *testing.T, h http.Handler, from string, rid int) string {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/http-bind", strings.NewReader(
			"<body xmlns='http://jabber.org/protocol/httpbind' rid='"+strconv.Itoa(rid)+"' to='localhost' wait='60' hold='1' ver='1.11'/>"))
		r.RemoteAddr = from
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("HTTP %d", w.Code)
		}
		return w.Body.String()
	}
	const refused = "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>"
	for _, tc := range []struct {
		value   string
		refused int // the first refused session, 0 for none
	}{
		{"2", 3},
		{"0", 0},
	} {
		t.Run(tc.value, func(t *testing.T) {
			ts := trefftest.NewServer(t, nil)
			cfg := Default()
			if err := cfg.Set("bosh_sessions_per_address", tc.value); err != nil {
				t.Fatal(err)
			}
			w, err := newWeb(cfg, ts.Server, nil)
			if err != nil {
				t.Fatal(err)
			}
			// More than the handler's default cap, which 0 must not leave.
			for i := 1; i <= bosh.DefaultMaxSessionsPerAddress+2; i++ {
				got := create(t, w, "203.0.113.9:"+strconv.Itoa(40000+i), 100*i)
				switch {
				case tc.refused != 0 && i >= tc.refused:
					if got != refused {
						t.Fatalf("session %d: %q, want %q", i, got, refused)
					}
				case !strings.Contains(got, " sid='") || !strings.Contains(got, "<stream:features"):
					t.Fatalf("session %d: %q, want a session", i, got)
				}
			}
			// Another address still gets a session.
			if got := create(t, w, "203.0.113.10:1", 5); !strings.Contains(got, " sid='") {
				t.Errorf("another address: %q", got)
			}
		})
	}
}

// The status page says what happens to strangers' messages by default.
func TestStatusPageStrangers(t *testing.T) {
	for mode, want := range map[string]string{"no": "are delivered", "drop": "are dropped", "quarantine": "are kept for you to review"} {
		cfg := Default()
		if err := cfg.Set("filter_strangers", mode); err != nil {
			t.Fatal(err)
		}
		w, err := newWeb(cfg, &treff.Server{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		w.statusPage(rec, httptest.NewRequest("GET", "/", nil))
		if body := rec.Body.String(); !strings.Contains(body, `<li id="strangers">Messages and contact requests from people not in your contacts `+want) {
			t.Errorf("filter_strangers = %s: the status page does not say %q:\n%s", mode, want, body)
		}
	}
}

// The status page says what push notifications reveal: who wrote and how
// many messages, the text only with push_body; nothing with push off.
func TestStatusPagePush(t *testing.T) {
	for _, tc := range []struct {
		name           string
		push, body     bool
		want, dontWant []string
	}{
		{"default", true, false, []string{`<li id="push">`, "who wrote", "how many messages", "never the text"}, []string{"the message's text"}},
		{"with body", true, true, []string{`<li id="push">`, "who wrote", "the message's text, which the app server"}, []string{"never the text"}},
		{"off", false, true, nil, []string{`id="push"`, "push notifications"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Push, cfg.PushBody = tc.push, tc.body
			w, err := newWeb(cfg, &treff.Server{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			w.statusPage(rec, httptest.NewRequest("GET", "/", nil))
			body := rec.Body.String()
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("status page without %q:\n%s", s, body)
				}
			}
			for _, s := range tc.dontWant {
				if strings.Contains(body, s) {
					t.Errorf("status page with %q:\n%s", s, body)
				}
			}
		})
	}
}
