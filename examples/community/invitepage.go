package main

import (
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/storage"
)

// The invitation landing page, at /invite/TOKEN on the https listener, in
// the manner of Prosody's mod_invites_page: a link that works on a phone
// (an xmpp: link alone does nothing without an app that knows it). It
// names apps to install per platform and opens the XEP-0401 xmpp: URI;
// the Google Play link carries the URI as its install referrer, which
// Conversations reads on first start. The page loads nothing from
// elsewhere, is rendered on the server with html/template (everything
// escaped), is not cached, sends no Referer (the token is in its URL) and
// says only "not valid" for an unknown, used or expired token.

//go:embed invite.html
var inviteHTML string

var inviteTemplate = template.Must(template.New("invite").Parse(inviteHTML))

// invitePage is what the invitation template gets.
type invitePage struct {
	Valid     bool
	Domain    string
	Expires   string
	URI       template.URL // the xmpp: URI (built here from checked parts)
	PlayStore string       // Conversations on Google Play, with the URI as referrer
	WebClient string       // the web client's path, or empty
}

// InvitePath is the path of an invitation's landing page; publicURL(cfg)
// + InvitePath(token) is its link.
func InvitePath(token string) string { return "invite/" + url.PathEscape(token) }

// maxInviteToken bounds the token read from a landing page's URL.
const maxInviteToken = 128

// validToken reports whether token could be one register.NewInvite makes
// (base32), so that nothing else reaches the store.
func validToken(token string) bool {
	if token == "" || len(token) > maxInviteToken {
		return false
	}
	for _, c := range token {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' || c == '=') {
			return false
		}
	}
	return true
}

// invitePage serves /invite/{token}.
func (w *web) invitePage(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	token := r.PathValue("token")
	var page invitePage
	var inv storage.Invite
	err := storage.ErrNotFound
	if validToken(token) && w.reg != nil && w.reg.Invites != nil {
		inv, err = w.reg.Invites.Invite(r.Context(), token)
	}
	switch {
	case err == nil:
		uri := register.InviteLink(inv)
		page = invitePage{
			Valid:     true,
			Domain:    inv.Domain,
			Expires:   inv.Expires.UTC().Format(time.DateTime),
			URI:       template.URL(uri),
			PlayStore: "https://play.google.com/store/apps/details?id=eu.siacs.conversations&referrer=" + url.QueryEscape(uri),
		}
		if w.cfg.WebClient != "" {
			page.WebClient = "/chat/"
		}
	case errors.Is(err, storage.ErrNotFound):
		rw.WriteHeader(http.StatusNotFound)
	default:
		w.srv.Log().Error("invitation page: reading the invitation failed", "err", err)
		http.Error(rw, "The invitation cannot be read now; try again later.", http.StatusServiceUnavailable)
		return
	}
	if err := inviteTemplate.Execute(rw, page); err != nil {
		w.srv.Log().Error("invitation page failed", "err", err)
	}
}

// inviteLanding returns the landing page link of an invitation link
// (xmpp:DOMAIN?register;preauth=TOKEN), or "" if the server has no https
// listener to serve it.
func inviteLanding(cfg Config, link string) string {
	_, token, ok := strings.Cut(link, ";preauth=")
	if cfg.HTTPS == "" || !ok || token == "" {
		return ""
	}
	return publicURL(cfg) + InvitePath(token)
}
