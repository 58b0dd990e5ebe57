package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The test in this file runs the spam-bot scenario of clients/spambot.py
// (slixmpp) against the example server binary with its abuse limits
// (package antispam) at their defaults, given explicitly.

// Events of clients/spambot.py (see its doc comment).
type (
	botReport struct {
		Bounced      map[string]int `json:"bounced"`
		RoomsCreated int            `json:"rooms_created"`
	}
	spamReceived struct {
		JID        string         `json:"jid"`
		Messages   map[string]int `json:"messages"`
		Subscribes map[string]int `json:"subscribes"`
		Errors     []stanzaError  `json:"errors"`
	}
)

// TestSpamBot: a freshly registered account (in-band, slixmpp's
// xep_0077) sends 500 chat messages to 5 accounts that are not its
// contacts, 200 subscription requests to JIDs nobody registered and
// tries to create 10 rooms, while two established users, each other's
// contacts, exchange 100 messages each way. The strangers limit (30 per
// hour, messages and subscription requests together) lets the first 30
// messages through and bounces the other 470 and all 200 requests with
// <policy-violation/> (type wait) naming the limit; the room creations
// limit (5 per hour) lets 5 rooms be made and bounces 5. The targets get
// 30 messages from the bot between them, and the friends all 200 of
// theirs, without a single error.
func TestSpamBot(t *testing.T) {
	const (
		targets   = 5
		messages  = 500
		subs      = 200
		rooms     = 10
		chat      = 100
		strangers = 30
		creations = 5
	)
	accounts := [][2]string{{"friend1@localhost", "friend1-pw"}, {"friend2@localhost", "friend2-pw"}}
	args := []string{"--jid", "friend1@localhost", "--password", "friend1-pw", "--peer", "friend2@localhost", "--peer-password", "friend2-pw",
		"--bot", "bot@localhost=bot-password", "--messages", fmt.Sprint(messages), "--subscriptions", fmt.Sprint(subs),
		"--rooms", fmt.Sprint(rooms), "--chat", fmt.Sprint(chat)}
	for i := 1; i <= targets; i++ {
		j, pw := fmt.Sprintf("target%d@localhost", i), fmt.Sprintf("target%d-pw", i)
		accounts = append(accounts, [2]string{j, pw})
		args = append(args, "--target", j+"="+pw)
	}
	_, _, p := startRegCommunity(t, []string{"-registration", "open", "-new-account-age", "24h",
		"-limit-strangers", fmt.Sprintf("%d/1h", strangers), "-limit-messages", "600/1m",
		"-limit-room-creations", fmt.Sprintf("%d/1h", creations)}, accounts...)
	es := p.clients().client(t, "spambot.py", "spambot", args...)

	var bot botReport
	es.one(t, "bot_report", "bot").decode(t, &bot)
	strangersText := fmt.Sprintf("New accounts may send %d per 1h messages and contact requests to people who are not their contacts; try again later.", strangers)
	want := map[string]int{
		"message policy-violation wait " + strangersText:                                                                         messages - strangers,
		"presence policy-violation wait " + strangersText:                                                                        subs,
		fmt.Sprintf("presence policy-violation wait New accounts may create %d per 1h group chats; try again later.", creations): rooms - creations,
	}
	if fmt.Sprint(bot.Bounced) != fmt.Sprint(want) {
		t.Errorf("errors the bot got:\n%v\nwant\n%v", bot.Bounced, want)
	}
	if bot.RoomsCreated != creations {
		t.Errorf("the bot created %d rooms, want %d", bot.RoomsCreated, creations)
	}
	fromBot := 0
	for i := 1; i <= targets; i++ {
		var r spamReceived
		es.one(t, "received", fmt.Sprintf("target%d", i)).decode(t, &r)
		fromBot += r.Messages["bot@localhost"]
		if len(r.Errors) > 0 || len(r.Subscribes) > 0 {
			t.Errorf("%s got errors %v, subscription requests %v", r.JID, r.Errors, r.Subscribes)
		}
		// Round robin: each target got its share.
		if n := r.Messages["bot@localhost"]; n != strangers/targets {
			t.Errorf("%s got %d messages from the bot, want %d", r.JID, n, strangers/targets)
		}
	}
	if fromBot != strangers {
		t.Errorf("the targets got %d messages from the bot, want %d", fromBot, strangers)
	}
	for _, f := range [][2]string{{"friend1", "friend2@localhost"}, {"friend2", "friend1@localhost"}} {
		var r spamReceived
		es.one(t, "received", f[0]).decode(t, &r)
		if r.Messages[f[1]] != chat || len(r.Errors) > 0 || r.Messages["bot@localhost"] != 0 {
			t.Errorf("%s got %v messages (want %d from %s) and errors %v", f[0], r.Messages, chat, f[1], r.Errors)
		}
	}
}

// TestStrangerFilter: the stranger filter (antispam.Filter) with the
// server-wide default filter_strangers = drop, and a user's own choice
// through the ad-hoc commands (slixmpp's xep_0050): carol's friend
// reaches her throughout; a stranger's message is dropped while she
// keeps the default; once she chose quarantine, the stranger's three
// messages and subscription request are kept from her, and her review
// delivers the two she picks, with a XEP-0203 delay, and discards the
// rest. The stranger never gets an error: the filter tells spammers
// nothing.
func TestStrangerFilter(t *testing.T) {
	accounts := [][2]string{{"carol@localhost", "carol-pw"}, {"friend@localhost", "friend-pw"}, {"stranger@localhost", "stranger-pw"}}
	_, _, p := startRegCommunity(t, []string{"-filter-strangers", "drop"}, accounts...)
	es := p.clients().client(t, "spambot.py", "filter", "--jid", "carol@localhost", "--password", "carol-pw",
		"--peer", "friend@localhost", "--peer-password", "friend-pw", "--stranger", "stranger@localhost=stranger-pw")

	mode := cmdReply(t, es, "carol", "mode", "complete")
	checkCompleted(t, mode, "", "Messages from strangers: kept for you to review.")
	var before struct {
		Bodies     []string `json:"bodies"`
		Subscribes []string `json:"subscribes"`
	}
	var after struct {
		Bodies []string `json:"bodies"`
	}
	for _, e := range es.of("marker", "carol") {
		var m struct {
			Name string `json:"name"`
		}
		e.decode(t, &m)
		switch m.Name {
		case "before_review":
			e.decode(t, &before)
		case "after_review":
			e.decode(t, &after)
		}
	}
	if !slices.Equal(before.Bodies, []string{"from a friend"}) || slices.Contains(before.Subscribes, "stranger@localhost") {
		t.Errorf("before the review carol got %q and requests from %q; want only her friend's message", before.Bodies, before.Subscribes)
	}
	review := cmdReply(t, es, "carol", "review", "execute")
	if review.Form == nil || !slices.Equal(review.Form.field("deliver").Options, []string{"1", "2", "3", "4"}) {
		t.Fatalf("review form: %+v", review.Form)
	}
	checkCompleted(t, cmdReply(t, es, "carol", "review", "complete"), review.SessionID, "Delivered: 2. Discarded: 2. Kept: 0.")
	if !slices.Equal(after.Bodies, []string{"from a friend", "kept 1", "kept 2"}) {
		t.Errorf("after the review carol got %q", after.Bodies)
	}
	delays := 0
	for _, e := range es.of("delay", "carol") {
		var d struct {
			Body      string `json:"body"`
			DelayFrom string `json:"delay_from"`
		}
		e.decode(t, &d)
		if strings.HasPrefix(d.Body, "kept") && d.DelayFrom == "localhost" {
			delays++
		}
	}
	if delays != 2 {
		t.Errorf("%d delivered messages carried a delay from localhost, want 2", delays)
	}
	// An empty quarantine: the command says so at once.
	checkCompleted(t, cmdReply(t, es, "carol", "review_again", "execute"), "", "Kept: 0.")
	var se struct {
		Errors []stanzaError `json:"errors"`
	}
	es.one(t, "stranger_errors", "stranger").decode(t, &se)
	if len(se.Errors) != 0 {
		t.Errorf("the stranger got errors: %+v", se.Errors)
	}
}

// TestPreAuthLimit: the IQs one stream sends before it logs in are
// limited (Server.PreAuthIQs, key limit_pre_auth): slixmpp, offered
// in-band registration, asks for the form 8 times on one stream; with
// -limit-pre-auth 5/1h the first 5 get the form and the other 3
// <policy-violation/> (type wait) with the limit in the text. A new
// connection starts with a full bucket.
func TestPreAuthLimit(t *testing.T) {
	_, _, p := startRegCommunity(t, []string{"-registration", "open", "-limit-pre-auth", "5/1h"})
	es := p.clients().client(t, "spambot.py", "preauth", "--jid", "someone@localhost", "--password", "some-password", "--requests", "8")
	var r struct {
		Replies []struct {
			Type  string       `json:"type"`
			Error *stanzaError `json:"error"`
		} `json:"replies"`
	}
	es.one(t, "preauth_replies", "flooder").decode(t, &r)
	if len(r.Replies) != 8 {
		t.Fatalf("%d replies, want 8", len(r.Replies))
	}
	for i, rep := range r.Replies {
		if i < 5 {
			if rep.Type != "result" || rep.Error != nil {
				t.Errorf("request %d: %s %+v, want the form", i+1, rep.Type, rep.Error)
			}
			continue
		}
		if rep.Type != "error" {
			t.Errorf("request %d: %s, want an error", i+1, rep.Type)
			continue
		}
		checkError(t, fmt.Sprintf("request %d", i+1), rep.Error, "policy-violation", "wait",
			"too many requests before logging in (the limit is 5 per 1h); try again later")
	}
	es.one(t, "preauth_replies", "next").decode(t, &r)
	if len(r.Replies) != 1 || r.Replies[0].Type != "result" {
		t.Errorf("a new connection's request: %+v, want the form", r.Replies)
	}
}
