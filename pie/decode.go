package pie

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/storage"
)

// DecodeOptions set how Decode reads a file.
type DecodeOptions struct {
	// Open opens a file an <xi:include href="NAME"/> names (ejabberd
	// writes the hosts to files of their own). Only local names (no
	// absolute path, no "..") are opened. Nil: includes are an error.
	Open func(name string) (io.ReadCloser, error)
}

// maxIncludes bounds how deeply includes nest.
const maxIncludes = 4

// Decode reads a XEP-0227 document from r and calls fn for each user and
// room, in document order; an error from fn stops it and is returned.
// Users' JIDs and roster JIDs are normalised; a user or contact whose JID
// is not valid is an error.
func Decode(r io.Reader, opts DecodeOptions, fn func(Entry) error) error {
	return decodeDoc(r, opts, fn, 0)
}

func decodeDoc(r io.Reader, opts DecodeOptions, fn func(Entry) error, depth int) error {
	d := xml.NewDecoder(r)
	d.Strict = true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return errors.New("pie: no <server-data/> element")
		}
		if err != nil {
			return fmt.Errorf("pie: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case se.Name == xml.Name{Space: NS, Local: "server-data"}:
			err = serverData(d, opts, fn, depth)
		case se.Name == xml.Name{Space: NS, Local: "host"}:
			err = host(d, se, opts, fn, depth) // ejabberd's included host files
		default:
			return fmt.Errorf("pie: the document is <%s xmlns=%q/>, not XEP-0227's <server-data xmlns=%q/>", se.Name.Local, se.Name.Space, NS)
		}
		if err != nil {
			return err
		}
		return nil
	}
}

func include(se xml.StartElement, opts DecodeOptions, fn func(Entry) error, depth int) error {
	href := attr(se, "href")
	if href == "" || !filepath.IsLocal(href) {
		return fmt.Errorf("pie: <xi:include href=%q/>: only files beside the document can be included", href)
	}
	if opts.Open == nil {
		return fmt.Errorf("pie: <xi:include href=%q/>: no way to open included files", href)
	}
	if depth >= maxIncludes {
		return fmt.Errorf("pie: <xi:include href=%q/>: includes nested too deeply", href)
	}
	f, err := opts.Open(href)
	if err != nil {
		return fmt.Errorf("pie: %w", err)
	}
	defer f.Close()
	if err := decodeDoc(f, opts, fn, depth+1); err != nil {
		return fmt.Errorf("%w (in %s)", err, href)
	}
	return nil
}

func serverData(d *xml.Decoder, opts DecodeOptions, fn func(Entry) error, depth int) error {
	return docChildren(d, func(t xml.StartElement) error {
		switch t.Name {
		case xml.Name{Space: NS, Local: "host"}:
			return host(d, t, opts, fn, depth)
		case xml.Name{Space: NSXInclude, Local: "include"}:
			return includeAndSkip(d, t, opts, fn, depth)
		default:
			return d.Skip()
		}
	})
}

// includeAndSkip decodes the file <xi:include/> names, then reads over
// the element itself.
func includeAndSkip(d *xml.Decoder, se xml.StartElement, opts DecodeOptions, fn func(Entry) error, depth int) error {
	if err := include(se, opts, fn, depth); err != nil {
		return err
	}
	return d.Skip()
}

func host(d *xml.Decoder, se xml.StartElement, opts DecodeOptions, fn func(Entry) error, depth int) error {
	domain, err := jid.Parse(attr(se, "jid"))
	if err != nil || domain.Localpart() != "" || domain.Resourcepart() != "" {
		return fmt.Errorf("pie: <host jid=%q/> is not a domain", attr(se, "jid"))
	}
	return docChildren(d, func(t xml.StartElement) error {
		switch t.Name {
		case xml.Name{Space: NS, Local: "user"}:
			u, err := user(d, t, domain.Domainpart())
			if err != nil {
				return err
			}
			return fn(Entry{User: u})
		case xml.Name{Space: NSRoom, Local: "room"}:
			r, err := room(d, t, domain.Domainpart())
			if err != nil {
				return err
			}
			return fn(Entry{Room: r})
		case xml.Name{Space: NSXInclude, Local: "include"}:
			return includeAndSkip(d, t, opts, fn, depth)
		default:
			return d.Skip()
		}
	})
}

// bareJID normalises s, which must be a bare JID (with a localpart if
// user is true).
func bareJID(s string, user bool) (string, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return "", err
	}
	if j.Resourcepart() != "" || user && j.Localpart() == "" {
		return "", fmt.Errorf("%q is not a bare JID", s)
	}
	return j.String(), nil
}

func user(d *xml.Decoder, se xml.StartElement, domain string) (*User, error) {
	name := attr(se, "name")
	j, err := bareJID(name+"@"+domain, true)
	if err != nil || name == "" {
		return nil, fmt.Errorf("pie: <user name=%q/> of %s: not a valid user name", name, domain)
	}
	u := &User{JID: j, Password: attr(se, "password")}
	fail := func(err error) (*User, error) { return nil, fmt.Errorf("pie: user %s: %w", j, err) }
	for _, a := range se.Attr {
		if a.Name.Space != NSAccount {
			continue
		}
		var t *time.Time
		switch a.Name.Local {
		case "created":
			t = &u.Account.Created
		case "last-login":
			t = &u.Account.LastLogin
		case "suspended":
			t = &u.Account.Suspended
		case "approved":
			t = &u.Account.Approved
		case "suspend-reason":
			u.Account.SuspendReason = a.Value
		}
		if t != nil {
			v, err := time.Parse(time.RFC3339Nano, a.Value)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", a.Name.Local, err))
			}
			*t = v.UTC()
		}
	}
	pending := map[string]bool{}
	err = eachChild(d, func(t xml.StartElement) error {
		switch t.Name {
		case xml.Name{Space: NSSCRAM, Local: "scram-credentials"}:
			c, err := scramCredential(d, t)
			if err != nil {
				return err
			}
			u.Credentials = append(u.Credentials, c)
			return nil
		case xml.Name{Space: nsRoster, Local: "query"}:
			return roster(d, u)
		case xml.Name{Space: nsClient, Local: "presence"}, xml.Name{Space: NS, Local: "presence"}:
			// Prosody 0.12 writes it without xmlns, in NS.
			if attr(t, "type") == "subscribe" {
				c, err := bareJID(attr(t, "from"), false)
				if err != nil {
					return err
				}
				pending[c] = true
			}
			return d.Skip()
		case xml.Name{Space: nsVCard, Local: "vCard"}:
			var err error
			u.VCard, err = raw(d, t, nil)
			return err
		case xml.Name{Space: nsPrivate, Local: "query"}:
			return private(d, u)
		case xml.Name{Space: nsPubsubOwner, Local: "pubsub"}:
			return pepConfig(d, u)
		case xml.Name{Space: nsPubsub, Local: "pubsub"}:
			return pepItems(d, u)
		case xml.Name{Space: NS, Local: "offline-messages"}:
			return offline(d, u)
		case xml.Name{Space: NSArchive, Local: "archive"}:
			u.Skipped = append(u.Skipped, "message archive")
		case xml.Name{Space: nsPrivacy, Local: "query"}:
			u.Skipped = append(u.Skipped, "privacy lists")
		default:
			u.Skipped = append(u.Skipped, fmt.Sprintf("<%s xmlns=%q/>", t.Name.Local, t.Name.Space))
		}
		return d.Skip()
	})
	if err != nil {
		return fail(err)
	}
	for c := range pending {
		i := indexContact(u.Roster, c)
		if i < 0 {
			u.Roster = append(u.Roster, storage.RosterItem{JID: c, Subscription: storage.SubNone})
			i = len(u.Roster) - 1
		}
		u.Roster[i].PendingIn = true
	}
	return u, nil
}

func indexContact(items []storage.RosterItem, c string) int {
	for i, it := range items {
		if it.JID == c {
			return i
		}
	}
	return -1
}

// hashSize is the output size of each SCRAM mechanism's hash.
var hashSize = map[string]int{
	"SCRAM-SHA-1":   sha1.Size,
	"SCRAM-SHA-256": sha256.Size,
	"SCRAM-SHA-512": sha512.Size,
}

func scramCredential(d *xml.Decoder, se xml.StartElement) (storage.Credential, error) {
	c := storage.Credential{Mechanism: attr(se, "mechanism")}
	size, ok := hashSize[c.Mechanism]
	if !ok {
		return c, fmt.Errorf("unsupported SCRAM mechanism %q", c.Mechanism)
	}
	var salt, stored, server string
	err := eachChild(d, func(t xml.StartElement) error {
		v, err := text(d)
		if err != nil {
			return err
		}
		switch t.Name.Local {
		case "iter-count":
			c.Iterations, _ = strconv.Atoi(strings.TrimSpace(v))
		case "salt":
			salt = v
		case "stored-key":
			stored = v
		case "server-key":
			server = v
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	// ejabberd 23.01 writes each value base64-encoded twice: the keys'
	// lengths tell.
	twice := false
	if c.StoredKey, twice, err = key(stored, size); err != nil {
		return c, fmt.Errorf("%s stored-key: %w", c.Mechanism, err)
	}
	if c.ServerKey, _, err = key(server, size); err != nil {
		return c, fmt.Errorf("%s server-key: %w", c.Mechanism, err)
	}
	if c.Salt, err = base64.StdEncoding.DecodeString(strings.TrimSpace(salt)); err == nil && twice {
		c.Salt, err = base64.StdEncoding.DecodeString(string(c.Salt))
	}
	if err != nil || len(c.Salt) == 0 {
		return c, fmt.Errorf("%s: bad salt", c.Mechanism)
	}
	if c.Iterations < 1 {
		return c, fmt.Errorf("%s: bad iter-count", c.Mechanism)
	}
	return c, nil
}

// key decodes a base64 key of size bytes, or one base64-encoded twice
// (and says so).
func key(s string, size int) ([]byte, bool, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, false, err
	}
	if len(b) == size {
		return b, false, nil
	}
	if b2, err := base64.StdEncoding.DecodeString(string(b)); err == nil && len(b2) == size {
		return b2, true, nil
	}
	return nil, false, fmt.Errorf("%d bytes, want %d", len(b), size)
}

func roster(d *xml.Decoder, u *User) error {
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name != (xml.Name{Space: nsRoster, Local: "item"}) {
			return d.Skip()
		}
		c, err := bareJID(attr(t, "jid"), false)
		if err != nil {
			return fmt.Errorf("roster item: %w", err)
		}
		it := storage.RosterItem{JID: c, Name: attr(t, "name"), Subscription: storage.Subscription(attr(t, "subscription"))}
		switch it.Subscription {
		case storage.SubNone, storage.SubTo, storage.SubFrom, storage.SubBoth:
		case "":
			it.Subscription = storage.SubNone
		default:
			return fmt.Errorf("roster item %s: subscription %q", c, it.Subscription)
		}
		it.PendingOut = attr(t, "ask") == "subscribe"
		it.Approved = attr(t, "approved") == "true" || attr(t, "approved") == "1"
		groups, err := childTexts(d, "group")
		if err != nil {
			return err
		}
		for _, g := range groups {
			if g != "" {
				it.Groups = append(it.Groups, g)
			}
		}
		if i := indexContact(u.Roster, c); i >= 0 {
			u.Roster[i] = it
		} else {
			u.Roster = append(u.Roster, it)
		}
		return nil
	})
}

func private(d *xml.Decoder, u *User) error {
	return eachChild(d, func(t xml.StartElement) error {
		doc, err := raw(d, t, nil)
		if err != nil {
			return err
		}
		u.Private = append(u.Private, PrivateDoc{Key: "{" + t.Name.Space + "}" + t.Name.Local, Doc: doc})
		return nil
	})
}

func pepNode(u *User, name string) *PEPNode {
	for i := range u.PEP {
		if u.PEP[i].Name == name {
			return &u.PEP[i]
		}
	}
	u.PEP = append(u.PEP, PEPNode{Name: name})
	return &u.PEP[len(u.PEP)-1]
}

// pepConfig reads <pubsub xmlns='...#owner'> with a <configure node='NAME'>
// per node and its submitted form, and <affiliations node='NAME'>, whose
// members are the node's whitelist (as Prosody and Treff write them).
func pepConfig(d *xml.Decoder, u *User) error {
	whitelists := map[string][]string{}
	err := eachChild(d, func(t xml.StartElement) error {
		node := attr(t, "node")
		switch {
		case node == "":
			return d.Skip()
		case t.Name.Local == "configure":
			return configure(d, pepNode(u, node))
		case t.Name.Local == "affiliations":
			return affiliations(d, node, whitelists)
		default:
			return d.Skip()
		}
	})
	if err != nil {
		return err
	}
	for name, wl := range whitelists {
		n := pepNode(u, name)
		if n.Config == nil {
			cfg := DefaultPEPConfig()
			n.Config = &cfg
		}
		n.Config.Whitelist = wl
	}
	return nil
}

func configure(d *xml.Decoder, n *PEPNode) error {
	cfg := DefaultPEPConfig()
	err := eachChild(d, func(x xml.StartElement) error {
		if x.Name == (xml.Name{Space: nsDataForm, Local: "x"}) {
			return form(d, &cfg)
		}
		return d.Skip()
	})
	if err != nil {
		return err
	}
	n.Config = &cfg
	return nil
}

func affiliations(d *xml.Decoder, node string, whitelists map[string][]string) error {
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name.Local == "affiliation" && attr(t, "affiliation") == "member" {
			j, err := bareJID(attr(t, "jid"), false)
			if err != nil {
				return fmt.Errorf("PEP node %s: affiliation: %w", node, err)
			}
			whitelists[node] = append(whitelists[node], j)
		}
		return d.Skip()
	})
}

// DefaultPEPConfig is the configuration of a node the file gives none
// for: the PEP module's default.
func DefaultPEPConfig() storage.PEPNodeConfig {
	return storage.PEPNodeConfig{
		AccessModel:   storage.AccessPresence,
		PersistItems:  true,
		MaxItems:      1,
		NotifyRetract: true,
		NotifyDelete:  true,
	}
}

// form reads a node configuration form into cfg; fields Treff does not
// keep are ignored.
func form(d *xml.Decoder, cfg *storage.PEPNodeConfig) error {
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name.Local != "field" {
			return d.Skip()
		}
		values, err := childTexts(d, "value")
		if err != nil {
			return err
		}
		for i, v := range values {
			values[i] = strings.TrimSpace(v)
		}
		applyField(cfg, attr(t, "var"), values)
		return nil
	})
}

func applyField(cfg *storage.PEPNodeConfig, field string, values []string) {
	if len(values) == 0 {
		// Prosody writes every field of its form, unset ones without a
		// value: the default stays.
		return
	}
	v := values[0]
	b := v == "1" || v == "true"
	switch field {
	case "pubsub#access_model":
		switch v {
		case storage.AccessOpen, storage.AccessPresence, storage.AccessRoster, storage.AccessWhitelist:
			cfg.AccessModel = v
		}
	case "pubsub#persist_items":
		cfg.PersistItems = b
	case "pubsub#max_items":
		if v == "max" {
			cfg.MaxItems = storage.PEPMaxItemsMax
		} else if n, err := strconv.Atoi(v); err == nil && n > 0 {
			cfg.MaxItems = n
		}
	case "pubsub#notify_retract":
		cfg.NotifyRetract = b
	case "pubsub#notify_delete":
		cfg.NotifyDelete = b
	case "pubsub#title":
		cfg.Title = v
	case "pubsub#roster_groups_allowed":
		cfg.RosterGroups = values
	}
}

// pepItems reads <pubsub xmlns='...pubsub'> with <items node='NAME'> of
// <item id='ID'>payload</item>.
func pepItems(d *xml.Decoder, u *User) error {
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name.Local != "items" || attr(t, "node") == "" {
			return d.Skip()
		}
		n := pepNode(u, attr(t, "node"))
		return eachChild(d, func(it xml.StartElement) error {
			item := storage.PEPItem{ID: attr(it, "id")}
			err := eachChild(d, func(p xml.StartElement) error {
				if item.Payload != nil {
					return d.Skip()
				}
				var err error
				item.Payload, err = raw(d, p, nil)
				return err
			})
			if err != nil {
				return err
			}
			if item.ID == "" {
				item.ID = "current"
			}
			n.Items = append(n.Items, item)
			return nil
		})
	})
}

func offline(d *xml.Decoder, u *User) error {
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name.Local != "message" {
			return d.Skip()
		}
		var received time.Time
		// The delay the exporting server added when it stored the
		// message is its arrival time; the importing server adds its
		// own when it delivers.
		stanza, err := raw(d, t, func(c xml.StartElement) bool {
			if c.Name != (xml.Name{Space: nsDelay, Local: "delay"}) || !received.IsZero() {
				return false
			}
			ts, err := time.Parse(time.RFC3339Nano, attr(c, "stamp"))
			if err != nil {
				return false
			}
			received = ts.UTC()
			return true
		})
		if err != nil {
			return err
		}
		if received.IsZero() {
			received = time.Now().UTC()
		}
		u.Offline = append(u.Offline, storage.OfflineMessage{Received: received, Stanza: bytes.Clone(stanza)})
		return nil
	})
}

// roomXML is the form of a room in NSRoom.
type roomXML struct {
	Name                   string    `xml:"name,attr"`
	Title                  string    `xml:"title,attr,omitempty"`
	Description            string    `xml:"description,attr,omitempty"`
	Subject                string    `xml:"subject,attr,omitempty"`
	SubjectBy              string    `xml:"subject-by,attr,omitempty"`
	Public                 bool      `xml:"public,attr,omitempty"`
	MembersOnly            bool      `xml:"members-only,attr,omitempty"`
	Moderated              bool      `xml:"moderated,attr,omitempty"`
	NonAnonymous           bool      `xml:"non-anonymous,attr,omitempty"`
	Persistent             bool      `xml:"persistent,attr,omitempty"`
	Password               string    `xml:"password,attr,omitempty"`
	MaxOccupants           int       `xml:"max-occupants,attr,omitempty"`
	MaxHistory             int       `xml:"max-history,attr,omitempty"`
	OccupantsChangeSubject bool      `xml:"occupants-change-subject,attr,omitempty"`
	OccupantsInvite        bool      `xml:"occupants-invite,attr,omitempty"`
	Created                time.Time `xml:"created,attr,omitzero"`
	Affiliations           []struct {
		JID         string `xml:"jid,attr"`
		Affiliation string `xml:"affiliation,attr"`
	} `xml:"affiliation"`
}

func room(d *xml.Decoder, se xml.StartElement, service string) (*storage.Room, error) {
	var x roomXML
	if err := d.DecodeElement(&x, &se); err != nil {
		return nil, fmt.Errorf("pie: room: %w", err)
	}
	j, err := bareJID(x.Name+"@"+service, true)
	if err != nil || x.Name == "" {
		return nil, fmt.Errorf("pie: <room name=%q/> of %s: not a valid room name", x.Name, service)
	}
	r := &storage.Room{JID: j, Name: x.Title, Description: x.Description, Subject: x.Subject, SubjectBy: x.SubjectBy,
		Public: x.Public, MembersOnly: x.MembersOnly, Moderated: x.Moderated, NonAnonymous: x.NonAnonymous,
		Persistent: x.Persistent, Password: x.Password, MaxOccupants: x.MaxOccupants, MaxHistory: x.MaxHistory,
		OccupantsChangeSubject: x.OccupantsChangeSubject, OccupantsInvite: x.OccupantsInvite, Created: x.Created.UTC(),
		Affiliations: map[string]storage.Affiliation{}}
	for _, a := range x.Affiliations {
		aj, err := bareJID(a.JID, false)
		if err != nil {
			return nil, fmt.Errorf("pie: room %s: affiliation: %w", j, err)
		}
		switch af := storage.Affiliation(a.Affiliation); af {
		case storage.AffOwner, storage.AffAdmin, storage.AffMember, storage.AffOutcast:
			r.Affiliations[aj] = af
		default:
			return nil, fmt.Errorf("pie: room %s: affiliation %q of %s", j, a.Affiliation, aj)
		}
	}
	return r, nil
}
