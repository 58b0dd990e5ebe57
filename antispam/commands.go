package antispam

import (
	"context"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/stanza"
)

// localUser lets every account of the server run the users' commands.
func localUser(ctx context.Context, from jid.JID) bool { return from.Localpart() != "" }

// modeCommand lets users choose their own mode.
func (f *Filter) modeCommand() adhoc.Command {
	return adhoc.Command{
		Node:    NodeFilter,
		Name:    "Messages from strangers",
		Allowed: localUser,
		Form: func(ctx context.Context, from jid.JID) *adhoc.Form {
			m, _ := f.Mode(ctx, from)
			cur := string(m)
			if cur == "" {
				cur = "default"
			}
			return &adhoc.Form{
				Title: "Messages from strangers",
				Instructions: "What happens to messages and contact requests from people not in your contacts: " +
					"no (you get them), drop (you never see them), quarantine (kept for you to review with the command \"Messages kept from strangers\"), " +
					"or default (the server's choice: " + string(f.Default) + ").",
				Fields: []adhoc.Field{
					{Var: "mode", Type: "list-single", Label: "Filter", Required: true, Values: []string{cur}, Options: []string{"default", string(Off), string(Drop), string(Quarantine)}},
				},
			}
		},
		Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
			s := v.Get("mode")
			var m Mode
			if s != "default" {
				var err error
				if m, err = ParseMode(s); err != nil {
					return adhoc.Result{}, stanza.BadRequest.WithText("the filter is one of default, no, drop or quarantine")
				}
			}
			if err := f.SetMode(ctx, from, m); err != nil {
				return adhoc.Result{}, err
			}
			eff := m
			if eff == "" {
				eff = f.Default
			}
			return adhoc.Result{Note: "Messages from strangers: " + describe(eff) + "."}, nil
		},
	}
}

func describe(m Mode) string {
	switch m {
	case Drop:
		return "dropped"
	case Quarantine:
		return "kept for you to review"
	}
	return "delivered"
}

// quarantineCommand lets users review what was kept.
func (f *Filter) quarantineCommand() adhoc.Command {
	return adhoc.Command{
		Node:    NodeQuarantine,
		Name:    "Messages kept from strangers",
		Allowed: localUser,
		Form: func(ctx context.Context, from jid.JID) *adhoc.Form {
			items, err := f.Quarantined(ctx, from)
			if err != nil || len(items) == 0 {
				return nil // runs at once and says so
			}
			lines := make([]string, len(items))
			ids := make([]string, len(items))
			for i, it := range items {
				ids[i] = strconv.FormatUint(it.ID, 10)
				lines[i] = ids[i] + ": " + Describe(it)
			}
			return &adhoc.Form{
				Title:        "Messages kept from strangers",
				Instructions: strings.Join(lines, "\n") + "\nPick those to deliver; discard the rest if you like.",
				Fields: []adhoc.Field{
					{Var: "deliver", Type: "list-multi", Label: "Deliver", Options: ids},
					{Var: "discard", Type: "boolean", Label: "Discard the others", Values: []string{"0"}},
				},
			}
		},
		Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
			var ids []uint64
			for _, s := range v["deliver"] {
				id, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return adhoc.Result{}, stanza.BadRequest.WithText("not a message number: " + s)
				}
				ids = append(ids, id)
			}
			var note []string
			if len(ids) > 0 {
				n, err := f.Release(ctx, from, ids...)
				if err != nil {
					return adhoc.Result{}, err
				}
				note = append(note, fmt.Sprintf("Delivered: %d.", n))
			}
			if d := v.Get("discard"); d == "1" || d == "true" {
				n, err := f.Discard(ctx, from)
				if err != nil {
					return adhoc.Result{}, err
				}
				note = append(note, fmt.Sprintf("Discarded: %d.", n))
			}
			left, err := f.Quarantined(ctx, from)
			if err != nil {
				return adhoc.Result{}, err
			}
			note = append(note, fmt.Sprintf("Kept: %d.", len(left)))
			return adhoc.Result{Note: strings.Join(note, " ")}, nil
		},
	}
}

// Describe returns one line about a kept stanza for people: what, from
// whom, when, and the start of a message's body.
func Describe(q Quarantined) string {
	var m struct {
		XMLName xml.Name
		Type    string `xml:"type,attr"`
		Body    string `xml:"body"`
	}
	_ = xml.Unmarshal(q.Stanza, &m)
	what := "message"
	if m.XMLName.Local == "presence" {
		what = "contact request"
	}
	s := what + " from " + q.From.String() + ", " + q.Received.UTC().Format(time.DateTime) + " UTC"
	if b := strings.Join(strings.Fields(m.Body), " "); b != "" {
		if r := []rune(b); len(r) > 80 {
			b = string(r[:80]) + "…"
		}
		s += ": " + b
	}
	return s
}
