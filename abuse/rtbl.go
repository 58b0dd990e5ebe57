package abuse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// Real-time block lists (RTBL): the server subscribes its own domain to
// each feed's node (XEP-0060 6.1), fetches the node's items (6.5) and
// then follows its notifications: a published item adds its id to the
// list, a retraction removes it, a purge or the node's deletion empties
// it. The ids are domains, bare JIDs or SHA-256 hashes (hex) of either,
// as xmppbl.org publishes them. Until a feed's first fetch succeeds it
// blocks nothing; failed attempts are retried, from 2 seconds up to every
// 5 minutes, and the items are fetched again every Resync.

const (
	nsPubSub      = "http://jabber.org/protocol/pubsub"
	nsPubSubEvent = "http://jabber.org/protocol/pubsub#event"
)

// Resync is how often a feed's items are fetched again, in case a
// notification was lost (a server restart on either side).
var Resync = 6 * time.Hour

// retry bounds the waits between failed attempts.
var retryMin, retryMax = 2 * time.Second, 5 * time.Minute

// start begins following the RTBL feeds, from Setup; following ends with
// ctx (the server's).
func (m *Module) start(ctx context.Context) {
	for _, f := range m.RTBL {
		go m.follow(ctx, f)
	}
}

// follow subscribes to f, fetches its items and fetches them again every
// Resync, until ctx ends.
func (m *Module) follow(ctx context.Context, f Feed) {
	wait := retryMin
	subscribed := false
	for {
		var err error
		if !subscribed {
			err = m.subscribe(ctx, f)
			subscribed = err == nil
		}
		if err == nil {
			err = m.fetch(ctx, f)
		}
		next := Resync
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("abuse: real-time block list not reachable; trying again", "feed", f.String(), "err", err, "in", wait.String())
			next = wait
			wait = min(2*wait, retryMax)
		} else {
			wait = retryMin
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// host is the JID the server subscribes with: its first domain.
func (m *Module) host() string { return m.srv.Hosts[0].Domain }

func (m *Module) iq(ctx context.Context, f Feed, typ, payload string) (*treff.Stanza, error) {
	var id [8]byte
	rand.Read(id[:])
	raw := "<iq type='" + typ + "' id='rtbl-" + hex.EncodeToString(id[:]) + "' from='" + string(treff.AppendEscaped(nil, m.host())) +
		"' to='" + string(treff.AppendEscaped(nil, f.Service.String())) + "'><pubsub xmlns='" + nsPubSub + "'>" + payload + "</pubsub></iq>"
	st, err := treff.NewStanza([]byte(raw))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := m.srv.SendIQ(ctx, st)
	if err != nil {
		return nil, err
	}
	if resp.Type == "error" {
		return nil, &feedError{resp.String()}
	}
	return resp, nil
}

type feedError struct{ raw string }

func (e *feedError) Error() string { return "the service answered with an error: " + e.raw }

func (m *Module) subscribe(ctx context.Context, f Feed) error {
	esc := func(s string) string { return string(treff.AppendEscaped(nil, s)) }
	_, err := m.iq(ctx, f, "set", "<subscribe node='"+esc(f.Node)+"' jid='"+esc(m.host())+"'/>")
	return err
}

// fetch replaces the feed's list with the node's items.
func (m *Module) fetch(ctx context.Context, f Feed) error {
	resp, err := m.iq(ctx, f, "get", "<items node='"+string(treff.AppendEscaped(nil, f.Node))+"'/>")
	if err != nil {
		return err
	}
	var v struct {
		Items struct {
			Item []struct {
				ID string `xml:"id,attr"`
			} `xml:"item"`
		} `xml:"http://jabber.org/protocol/pubsub items"`
	}
	if err := resp.DecodePayload(&v); err != nil {
		return err
	}
	var s set
	for _, it := range v.Items.Item {
		s.add(it.ID)
	}
	m.mu.Lock()
	m.feeds[f.String()] = s
	m.mu.Unlock()
	m.log.Info("real-time block list loaded", "feed", f.String(), "entries", s.len())
	if m.OnFeedUpdate != nil {
		m.OnFeedUpdate(f, s.len())
	}
	return nil
}

type eventMessage struct {
	Event *struct {
		Items *struct {
			Node string `xml:"node,attr"`
			Item []struct {
				ID string `xml:"id,attr"`
			} `xml:"item"`
			Retract []struct {
				ID string `xml:"id,attr"`
			} `xml:"retract"`
		} `xml:"items"`
		Purge *struct {
			Node string `xml:"node,attr"`
		} `xml:"purge"`
		Delete *struct {
			Node string `xml:"node,attr"`
		} `xml:"delete"`
	} `xml:"http://jabber.org/protocol/pubsub#event event"`
}

// notification applies a feed's notification (a message from the feed's
// service to the server).
func (m *Module) notification(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage || st.Type == "error" {
		return false
	}
	var feeds []Feed
	for _, f := range m.RTBL {
		if f.Service.Equal(st.From) {
			feeds = append(feeds, f)
		}
	}
	if len(feeds) == 0 {
		return false
	}
	var ev eventMessage
	if err := st.Decoder().Decode(&ev); err != nil || ev.Event == nil {
		return false
	}
	node := func() string {
		switch e := ev.Event; {
		case e.Items != nil:
			return e.Items.Node
		case e.Purge != nil:
			return e.Purge.Node
		case e.Delete != nil:
			return e.Delete.Node
		}
		return ""
	}()
	var feed *Feed
	for i := range feeds {
		if feeds[i].Node == node {
			feed = &feeds[i]
		}
	}
	if feed == nil {
		return false
	}
	key := feed.String()
	m.mu.Lock()
	s := m.feeds[key]
	switch e := ev.Event; {
	case e.Items != nil:
		for _, it := range e.Items.Item {
			s.add(it.ID)
		}
		for _, r := range e.Items.Retract {
			s.remove(r.ID)
		}
	case e.Purge != nil, e.Delete != nil:
		s = set{}
	}
	m.feeds[key] = s
	n := s.len()
	m.mu.Unlock()
	m.log.Debug("real-time block list updated", "feed", key, "entries", n)
	if m.OnFeedUpdate != nil {
		m.OnFeedUpdate(*feed, n)
	}
	return true
}

// ParseFeed parses "SERVICE/NODE" (e.g. "xmppbl.org/muc_bans_sha256"):
// the node is what follows the first slash.
func ParseFeed(s string) (Feed, error) {
	i := -1
	for k := 0; k < len(s); k++ {
		if s[k] == '/' {
			i = k
			break
		}
	}
	if i <= 0 || i == len(s)-1 {
		return Feed{}, &feedSyntax{s}
	}
	j, err := jid.Parse(s[:i])
	if err != nil || j.Resourcepart() != "" {
		return Feed{}, &feedSyntax{s}
	}
	return Feed{Service: j, Node: s[i+1:]}, nil
}

type feedSyntax struct{ s string }

func (e *feedSyntax) Error() string {
	return "\"" + e.s + "\" is not JID/NODE (like xmppbl.org/muc_bans_sha256)"
}
