// Package stanza implements RFC 6120 section 8.3 stanza errors, as values a
// handler returns and the server serialises, and a reader for the child
// elements of a serialised stanza.
//
// A Condition is an error by itself, so an IQ handler may simply
//
//	return nil, stanza.ItemNotFound
//
// and an Error adds a type, a human-readable text or an application-specific
// condition:
//
//	return nil, stanza.Errorf(stanza.NotAcceptable, "at most %d items", max)
//
// Both are values: a module cannot change an error another module returns.
// errors.Is(err, stanza.ItemNotFound) holds for either form, wrapped or not,
// whatever the text; FromError finds the Error behind any error.
//
// Children walks the child elements of a serialised element without
// copying it (treff.Stanza.Children uses it for a stanza).
package stanza

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NS is the namespace of the defined conditions and of the <text/> element
// of a stanza error (RFC 6120 section 8.3.3).
const NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

// ErrorType is the type of a stanza error (RFC 6120 section 8.3.2): what the
// sender may do about it.
type ErrorType string

// Error types.
const (
	// Auth: retry after providing credentials.
	Auth ErrorType = "auth"
	// Cancel: do not retry (the error cannot be remedied).
	Cancel ErrorType = "cancel"
	// Continue: proceed (the condition was only a warning).
	Continue ErrorType = "continue"
	// Modify: retry after changing the data sent.
	Modify ErrorType = "modify"
	// Wait: retry after waiting (the error is temporary).
	Wait ErrorType = "wait"
)

func (t ErrorType) valid() bool {
	switch t {
	case Auth, Cancel, Continue, Modify, Wait:
		return true
	}
	return false
}

// Condition is a defined stanza error condition (RFC 6120 section 8.3.3),
// the local name of the condition element. It implements error, so that a
// handler can return one as it is; it is then sent with its DefaultType.
type Condition string

// The defined conditions of RFC 6120 section 8.3.3, each with the error
// type the RFC recommends, which DefaultType returns.
const (
	// BadRequest: the request is malformed or cannot be processed (modify).
	BadRequest Condition = "bad-request"
	// Conflict: a resource or session with the name or address exists
	// already (cancel).
	Conflict Condition = "conflict"
	// FeatureNotImplemented: the feature is not implemented by the
	// recipient or the server (cancel).
	FeatureNotImplemented Condition = "feature-not-implemented"
	// Forbidden: the requester lacks the permissions (auth).
	Forbidden Condition = "forbidden"
	// Gone: the recipient or server can no longer be contacted at this
	// address (cancel).
	Gone Condition = "gone"
	// InternalServerError: a misconfiguration or other internal error
	// (cancel; RFC 3920 said wait, RFC 6120 section 8.3.3.6 says cancel).
	InternalServerError Condition = "internal-server-error"
	// ItemNotFound: the addressed JID or item cannot be found (cancel).
	ItemNotFound Condition = "item-not-found"
	// JIDMalformed: an address does not conform to RFC 7622 (modify).
	JIDMalformed Condition = "jid-malformed"
	// NotAcceptable: the request does not meet criteria defined by the
	// recipient or server (modify).
	NotAcceptable Condition = "not-acceptable"
	// NotAllowed: no entity is allowed to perform the action (cancel).
	NotAllowed Condition = "not-allowed"
	// NotAuthorized: the sender must provide credentials first (auth).
	NotAuthorized Condition = "not-authorized"
	// PolicyViolation: the entity violated a local service policy (modify;
	// the RFC allows wait, depending on the policy).
	PolicyViolation Condition = "policy-violation"
	// RecipientUnavailable: the recipient is temporarily unavailable
	// (wait).
	RecipientUnavailable Condition = "recipient-unavailable"
	// Redirect: the recipient or server redirects requests to another
	// entity, temporarily (modify).
	Redirect Condition = "redirect"
	// RegistrationRequired: the requester must register first (auth).
	RegistrationRequired Condition = "registration-required"
	// RemoteServerNotFound: the remote server does not exist or cannot be
	// resolved (cancel).
	RemoteServerNotFound Condition = "remote-server-not-found"
	// RemoteServerTimeout: the remote server could not be reached in
	// time (wait).
	RemoteServerTimeout Condition = "remote-server-timeout"
	// ResourceConstraint: the server or recipient lacks the resources to
	// serve the request (wait).
	ResourceConstraint Condition = "resource-constraint"
	// ServiceUnavailable: the server or recipient does not provide the
	// service (cancel).
	ServiceUnavailable Condition = "service-unavailable"
	// SubscriptionRequired: the requester must subscribe first (auth).
	SubscriptionRequired Condition = "subscription-required"
	// UndefinedCondition: none of the others; to be used with an
	// application-specific condition (cancel here; the RFC allows any
	// type).
	UndefinedCondition Condition = "undefined-condition"
	// UnexpectedRequest: the request was understood but not expected now,
	// e.g. out of order (wait; the RFC allows modify).
	UnexpectedRequest Condition = "unexpected-request"
)

// DefaultType returns the error type RFC 6120 section 8.3.3 recommends for
// the condition: cancel for a condition it does not define.
func (c Condition) DefaultType() ErrorType {
	switch c {
	case BadRequest, JIDMalformed, NotAcceptable, PolicyViolation, Redirect:
		return Modify
	case Forbidden, NotAuthorized, RegistrationRequired, SubscriptionRequired:
		return Auth
	case RecipientUnavailable, RemoteServerTimeout, ResourceConstraint, UnexpectedRequest:
		return Wait
	}
	return Cancel
}

// Error implements error: "stanza: " and the condition.
func (c Condition) Error() string { return "stanza: " + string(c) }

// WithText returns an Error with the condition and a human-readable text.
func (c Condition) WithText(text string) Error { return Error{Condition: c, Text: text} }

func (c Condition) stanzaError() Error { return Error{Condition: c} }

// Error is a stanza error (RFC 6120 section 8.3.2). It is a value: copies
// share nothing that could be changed, so that errors can be package-level
// variables and be returned by many handlers.
//
// errors.Is(e, c) reports whether e has the Condition c; errors.Is(e, t)
// for an Error t compares the condition and, if t has one, the type (the
// text is not compared). errors.As(err, &e) with a variable of type Error
// finds an Error in a chain; FromError also finds a bare Condition.
type Error struct {
	// Type is the error type; empty means the condition's DefaultType.
	Type ErrorType
	// Condition is the defined condition; empty means
	// undefined-condition.
	Condition Condition
	// Text is an optional human-readable description (the <text/>
	// element), for the sender, never parsed by software.
	Text string
	// App is an optional application-specific condition element,
	// serialised (e.g. "<unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='publish'/>"),
	// sent after the text. It must be one well-formed element that
	// declares its namespace.
	App string
}

// Errorf returns an Error with the condition and a text formatted as with
// fmt.Sprintf.
func Errorf(c Condition, format string, args ...any) Error {
	return Error{Condition: c, Text: fmt.Sprintf(format, args...)}
}

// Error implements error: "stanza: ", the condition and the text if any.
func (e Error) Error() string {
	c := e.Condition
	if c == "" {
		c = UndefinedCondition
	}
	if e.Text == "" {
		return "stanza: " + string(c)
	}
	return "stanza: " + string(c) + ": " + e.Text
}

// Is reports whether e matches target for errors.Is: a Condition equal to
// e's, or an Error with the same condition and, unless target's Type is
// empty, the same type as sent (the text and application condition are
// not compared).
func (e Error) Is(target error) bool {
	switch t := target.(type) {
	case Condition:
		return e.cond() == t
	case Error:
		return e.cond() == t.cond() && (t.Type == "" || t.Type == e.ErrorType())
	}
	return false
}

// ErrorType returns the type sent for e: Type if it is one of the five
// types, otherwise the condition's DefaultType.
func (e Error) ErrorType() ErrorType {
	if e.Type.valid() {
		return e.Type
	}
	return e.cond().DefaultType()
}

// cond returns the condition sent for e.
func (e Error) cond() Condition {
	if e.Condition == "" || !validName(string(e.Condition)) {
		return UndefinedCondition
	}
	return e.Condition
}

func (e Error) stanzaError() Error { return e }

// FromError returns the stanza error behind err: the first Error or
// Condition in its chain (see errors.As), as an Error. It reports false if
// there is none (nil included).
func FromError(err error) (Error, bool) {
	var se interface{ stanzaError() Error }
	if errors.As(err, &se) {
		return se.stanzaError(), true
	}
	return Error{}, false
}

// AppendXML appends the error element to dst:
//
//	<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>...</text>App</error>
//
// The type is ErrorType; a condition that is empty or not an XML name is
// sent as undefined-condition; the text is escaped and left out if empty;
// App is written as it is.
func (e Error) AppendXML(dst []byte) []byte {
	dst = append(dst, "<error type='"...)
	dst = append(dst, e.ErrorType()...)
	dst = append(dst, "'><"...)
	dst = append(dst, e.cond()...)
	dst = append(dst, " xmlns='"+NS+"'/>"...)
	if e.Text != "" {
		dst = append(dst, "<text xmlns='"+NS+"'>"...)
		dst = AppendEscaped(dst, e.Text)
		dst = append(dst, "</text>"...)
	}
	dst = append(dst, e.App...)
	return append(dst, "</error>"...)
}

// validName reports whether s can be written as an element's local name:
// ASCII letters, digits, '-', '_' and '.', not starting with a digit,
// '-' or '.' (the defined conditions are ASCII).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9' || c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// AppendEscaped appends s to dst escaped for XML character data or an
// attribute value quoted with either quote: the five special characters
// become entities, and tab, newline and carriage return character
// references (so that they survive in an attribute value, where a parser
// turns them into spaces, and a carriage return anywhere). Invalid UTF-8
// becomes U+FFFD and the control characters XML 1.0 does not allow are
// dropped, so that no text the server writes can break a stream.
func AppendEscaped(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&apos;"
		case '"':
			esc = "&quot;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if s[i] >= 0x20 {
				continue
			}
			esc = "" // not allowed in XML 1.0
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, esc...)
		last = i + 1
	}
	return append(dst, s[last:]...)
}
