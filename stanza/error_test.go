package stanza_test

import (
	"encoding/xml"
	"errors"
	"fmt"
	"testing"

	"github.com/treff-im/treff/stanza"
)

func TestIsAs(t *testing.T) {
	wrapped := fmt.Errorf("mam: query: %w", stanza.ItemNotFound.WithText("no such message"))
	cases := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"condition", stanza.ItemNotFound, stanza.ItemNotFound, true},
		{"other condition", stanza.ItemNotFound, stanza.BadRequest, false},
		{"error with text", stanza.ItemNotFound.WithText("x"), stanza.ItemNotFound, true},
		{"error, other condition", stanza.ItemNotFound.WithText("x"), stanza.Conflict, false},
		{"wrapped", wrapped, stanza.ItemNotFound, true},
		{"wrapped condition", fmt.Errorf("x: %w", stanza.Forbidden), stanza.Forbidden, true},
		{"error vs error, text ignored", stanza.Errorf(stanza.BadRequest, "a %d", 1), stanza.Error{Condition: stanza.BadRequest, Text: "b"}, true},
		{"error vs error with default type", stanza.Error{Condition: stanza.BadRequest}, stanza.Error{Condition: stanza.BadRequest, Type: stanza.Modify}, true},
		{"error vs error, other type", stanza.Error{Condition: stanza.ResourceConstraint, Type: stanza.Cancel}, stanza.Error{Condition: stanza.ResourceConstraint, Type: stanza.Wait}, false},
		{"empty condition is undefined-condition", stanza.Error{Text: "x"}, stanza.UndefinedCondition, true},
		{"plain error", errors.New("item-not-found"), stanza.ItemNotFound, false},
		{"condition vs error", stanza.ItemNotFound, stanza.Error{Condition: stanza.ItemNotFound}, false},
	}
	for _, c := range cases {
		if got := errors.Is(c.err, c.target); got != c.want {
			t.Errorf("%s: errors.Is(%v, %v) = %v, want %v", c.name, c.err, c.target, got, c.want)
		}
	}

	var e stanza.Error
	if !errors.As(wrapped, &e) || e.Condition != stanza.ItemNotFound || e.Text != "no such message" {
		t.Errorf("errors.As(%v) = %+v", wrapped, e)
	}
	var c stanza.Condition
	if !errors.As(fmt.Errorf("x: %w", stanza.Gone), &c) || c != stanza.Gone {
		t.Errorf("errors.As for a Condition = %q", c)
	}
}

func TestFromError(t *testing.T) {
	cases := []struct {
		err  error
		want stanza.Error
		ok   bool
	}{
		{nil, stanza.Error{}, false},
		{errors.New("disk full"), stanza.Error{}, false},
		{stanza.Conflict, stanza.Error{Condition: stanza.Conflict}, true},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", stanza.Conflict)), stanza.Error{Condition: stanza.Conflict}, true},
		{stanza.Error{Type: stanza.Wait, Condition: stanza.PolicyViolation, Text: "slow down"}, stanza.Error{Type: stanza.Wait, Condition: stanza.PolicyViolation, Text: "slow down"}, true},
		{errors.Join(errors.New("x"), stanza.Forbidden.WithText("no")), stanza.Forbidden.WithText("no"), true},
		// The first in the chain wins.
		{fmt.Errorf("%w", stanza.Error{Condition: stanza.Gone, Text: "outer"}), stanza.Error{Condition: stanza.Gone, Text: "outer"}, true},
	}
	for _, c := range cases {
		got, ok := stanza.FromError(c.err)
		if got != c.want || ok != c.ok {
			t.Errorf("FromError(%v) = %+v, %v; want %+v, %v", c.err, got, ok, c.want, c.ok)
		}
	}
}

func TestDefaultType(t *testing.T) {
	want := map[stanza.Condition]stanza.ErrorType{
		stanza.BadRequest:            stanza.Modify,
		stanza.Conflict:              stanza.Cancel,
		stanza.FeatureNotImplemented: stanza.Cancel,
		stanza.Forbidden:             stanza.Auth,
		stanza.Gone:                  stanza.Cancel,
		stanza.InternalServerError:   stanza.Cancel,
		stanza.ItemNotFound:          stanza.Cancel,
		stanza.JIDMalformed:          stanza.Modify,
		stanza.NotAcceptable:         stanza.Modify,
		stanza.NotAllowed:            stanza.Cancel,
		stanza.NotAuthorized:         stanza.Auth,
		stanza.PolicyViolation:       stanza.Modify,
		stanza.RecipientUnavailable:  stanza.Wait,
		stanza.Redirect:              stanza.Modify,
		stanza.RegistrationRequired:  stanza.Auth,
		stanza.RemoteServerNotFound:  stanza.Cancel,
		stanza.RemoteServerTimeout:   stanza.Wait,
		stanza.ResourceConstraint:    stanza.Wait,
		stanza.ServiceUnavailable:    stanza.Cancel,
		stanza.SubscriptionRequired:  stanza.Auth,
		stanza.UndefinedCondition:    stanza.Cancel,
		stanza.UnexpectedRequest:     stanza.Wait,
		"x-unknown":                  stanza.Cancel,
	}
	for c, typ := range want {
		if got := c.DefaultType(); got != typ {
			t.Errorf("%s.DefaultType() = %s, want %s", c, got, typ)
		}
		if got := (stanza.Error{Condition: c}).ErrorType(); got != typ {
			t.Errorf("Error{%s}.ErrorType() = %s, want %s", c, got, typ)
		}
	}
	if got := (stanza.Error{Condition: stanza.BadRequest, Type: stanza.Wait}).ErrorType(); got != stanza.Wait {
		t.Errorf("an explicit type: %s", got)
	}
	if got := (stanza.Error{Condition: stanza.BadRequest, Type: "later"}).ErrorType(); got != stanza.Modify {
		t.Errorf("an invalid type: %s, want the default", got)
	}
}

func TestErrorString(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{stanza.ItemNotFound, "stanza: item-not-found"},
		{stanza.ItemNotFound.WithText("gone fishing"), "stanza: item-not-found: gone fishing"},
		{stanza.Error{}, "stanza: undefined-condition"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

// wireError is a stanza error as encoding/xml reads it.
type wireError struct {
	XMLName xml.Name
	Type    string `xml:"type,attr"`
	Conds   []struct {
		XMLName xml.Name
		Inner   string `xml:",innerxml"`
	} `xml:",any"`
	Text struct {
		XMLName xml.Name
		Value   string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text"`
}

func TestAppendXMLRoundTrip(t *testing.T) {
	cases := []struct {
		e        stanza.Error
		typ      string
		cond     string
		text     string
		app      string
		wantBody string
	}{
		{e: stanza.Error{Condition: stanza.ItemNotFound}, typ: "cancel", cond: "item-not-found",
			wantBody: "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"},
		{e: stanza.Error{Condition: stanza.BadRequest, Text: "<a> & 'b' \"c\"\r\n\x01\xff"}, typ: "modify", cond: "bad-request", text: "<a> & 'b' \"c\"\r\n\ufffd"},
		{e: stanza.Error{Type: stanza.Wait, Condition: stanza.PolicyViolation}, typ: "wait", cond: "policy-violation"},
		{e: stanza.Error{Condition: "no such<thing"}, typ: "cancel", cond: "undefined-condition"},
		{e: stanza.Error{Condition: stanza.FeatureNotImplemented, App: "<unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='publish'/>"},
			typ: "cancel", cond: "feature-not-implemented", app: "unsupported"},
	}
	for _, c := range cases {
		b := c.e.AppendXML([]byte("prefix"))
		if string(b[:6]) != "prefix" {
			t.Fatalf("AppendXML overwrote dst: %q", b)
		}
		b = b[6:]
		if c.wantBody != "" && string(b) != c.wantBody {
			t.Errorf("AppendXML(%+v) = %s, want %s", c.e, b, c.wantBody)
		}
		var w wireError
		if err := xml.Unmarshal(b, &w); err != nil {
			t.Fatalf("AppendXML(%+v) = %s: %v", c.e, b, err)
		}
		if w.XMLName.Local != "error" || w.Type != c.typ {
			t.Errorf("%s: element %v type %q, want error %q", b, w.XMLName, w.Type, c.typ)
		}
		var conds []string
		app := ""
		for _, x := range w.Conds {
			switch {
			case x.XMLName.Space == stanza.NS && x.XMLName.Local != "text":
				conds = append(conds, x.XMLName.Local)
			case x.XMLName.Space != stanza.NS:
				app = x.XMLName.Local
			}
		}
		if len(conds) != 1 || conds[0] != c.cond {
			t.Errorf("%s: conditions %v, want [%s]", b, conds, c.cond)
		}
		if w.Text.Value != c.text {
			t.Errorf("%s: text %q, want %q", b, w.Text.Value, c.text)
		}
		if app != c.app {
			t.Errorf("%s: application condition %q, want %q", b, app, c.app)
		}
	}
}

func TestErrorIsAValue(t *testing.T) {
	// A handler that changes the error it got changes its own copy only.
	e := stanza.ItemNotFound.WithText("a")
	f := e
	f.Text = "b"
	if e.Text != "a" {
		t.Fatal("copies share their text")
	}
}
