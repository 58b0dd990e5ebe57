package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/storage/memstore"
)

// TestInvitePage: /invite/TOKEN shows a valid invitation's xmpp: URI as
// a link, names the apps to install and loads nothing from elsewhere;
// an unknown, malformed or used token gets a 404 page that repeats
// nothing of it.
func TestInvitePage(t *testing.T) {
	store := memstore.New()
	reg := &register.Module{Invites: store}
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.WebClient = "/srv/converse"
	w, err := newWeb(cfg, &treff.Server{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	inv, link, err := reg.NewInvite(t.Context(), "example.org", "", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	rec := get("/invite/" + inv.Token)
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, body)
	}
	for _, want := range []string{
		`<a id="open" class="button" href="` + link + `">`,
		`<code id="uri">` + link + `</code>`,
		"Conversations", "Monal", "Siskin IM", "Dino", "Gajim", "Converse", `href="/chat/"`,
		"https://play.google.com/store/apps/details?id=eu.siacs.conversations&amp;referrer=xmpp%3Aexample.org%3Fregister%3Bpreauth%3D" + inv.Token,
		"You are invited to chat on example.org",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("invitation page without %q:\n%s", want, body)
		}
	}
	for _, bad := range []string{"<script", "<img", "<link", "src=", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("invitation page loads something (%q):\n%s", bad, body)
		}
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := rec.Header().Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}

	for _, path := range []string{"/invite/AAAAAAAAAAAAAAAAAAAAAAAA", "/invite/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/invite/" + strings.Repeat("A", 500)} {
		rec := get(path)
		body := rec.Body.String()
		if rec.Code != http.StatusNotFound || !strings.Contains(body, `id="invalid"`) || strings.Contains(body, "xmpp:") || strings.Contains(body, "<script>") {
			t.Errorf("%s: HTTP %d:\n%s", path, rec.Code, body)
		}
	}
	if _, err := store.UseInvite(t.Context(), inv.Token); err != nil {
		t.Fatal(err)
	}
	if rec := get("/invite/" + inv.Token); rec.Code != http.StatusNotFound {
		t.Errorf("used invitation: HTTP %d", rec.Code)
	}
}

// TestInviteLanding: the landing link of an invitation is under the
// https listener's public URL, and there is none without https.
func TestInviteLanding(t *testing.T) {
	cfg := Default()
	cfg.HTTPURL = "https://chat.example.org/"
	if got, want := inviteLanding(cfg, "xmpp:example.org?register;preauth=ABC234"), "https://chat.example.org/invite/ABC234"; got != want {
		t.Errorf("landing %q, want %q", got, want)
	}
	if got := inviteLanding(cfg, "xmpp:example.org"); got != "" {
		t.Errorf("landing of a link without a token: %q", got)
	}
	cfg.HTTPS = ""
	if got := inviteLanding(cfg, "xmpp:example.org?register;preauth=ABC234"); got != "" {
		t.Errorf("landing without https: %q", got)
	}
}
