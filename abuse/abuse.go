// Package abuse helps an open Treff server keep spam and abuse out, the
// way the JabberSPAM manifesto asks of public servers:
//
//   - a server-wide block list of domains and JIDs (Module.Block,
//     Unblock, List), kept in storage: local users neither receive from
//     nor send to them;
//   - real-time block lists (RTBL, Module.RTBL): publish-subscribe nodes
//     whose item ids are domains, JIDs or SHA-256 hashes of JIDs (the
//     xmppbl.org format), which the server subscribes to and keeps live
//     from their notifications;
//   - spam reports (XEP-0377, carried in XEP-0191 blocks; see
//     blocking.Module.OnReport): kept for the admins (storage.Reports)
//     and announced to them by a message.
//
// Module.Blocked implements antispam's Blocklist, for stranger filtering
// and room gates.
package abuse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// ListKey is the key under which the server-wide block list is kept in
// storage.Blocklists (no account can have it: it is no JID).
const ListKey = "treff:server-blocklist"

// DefaultMaxReports is how many reports are kept; the oldest go first.
const DefaultMaxReports = 10000

// Feed is a real-time block list: a pubsub node on a service.
type Feed struct {
	Service jid.JID
	Node    string
}

func (f Feed) String() string { return f.Service.String() + "/" + f.Node }

// Module is the server-wide block list, RTBL subscriber and report desk.
type Module struct {
	// Admins are the bare JIDs told of each report (and, with
	// NotifyRegistrations, of each new account).
	Admins []string
	// RTBL are the real-time block lists to follow.
	RTBL []Feed
	// Store keeps the server's own list. nil means the server's Storage,
	// which must then implement storage.Blocklists.
	Store storage.Blocklists
	// Reports keeps reports. nil means the server's Storage if it
	// implements storage.Reports; without one, reports are only
	// announced.
	Reports storage.Reports
	// MaxReports bounds the reports kept. 0 means DefaultMaxReports.
	MaxReports int
	// ForwardTo, if set, is a service that gets each report as a message
	// (a block list's maintainers, say): the reported JID, the reason and
	// the reporter's text in <report xmlns='urn:xmpp:reporting:1'/> with
	// <jid xmlns='urn:xmpp:jid:0'/>, as Prosody's mod_report_forward
	// sends them; never the reporter's JID.
	ForwardTo jid.JID
	// OnFeedUpdate, if set, is called after a feed's list changed (loaded,
	// or changed by a notification) with the feed and its entry count.
	OnFeedUpdate func(feed Feed, entries int)

	srv *treff.Server
	log *slog.Logger

	mu     sync.RWMutex
	own    set            // the server's own list
	feeds  map[string]set // per feed
	notify sync.Mutex     // one report at a time
}

// set is a block list in memory: domains (with their subdomains), bare
// JIDs and SHA-256 hashes (hex) of bare JIDs or domains.
type set struct {
	domains map[string]bool
	jids    map[string]bool
	hashes  map[string]bool
}

func (s *set) add(entry string) {
	entry = strings.TrimSpace(entry)
	switch {
	case entry == "":
	case isHash(entry):
		if s.hashes == nil {
			s.hashes = make(map[string]bool)
		}
		s.hashes[strings.ToLower(entry)] = true
	case !strings.Contains(entry, "@"):
		if s.domains == nil {
			s.domains = make(map[string]bool)
		}
		s.domains[strings.ToLower(strings.TrimSuffix(entry, "."))] = true
	default:
		j, err := jid.Parse(entry)
		if err != nil {
			return
		}
		if s.jids == nil {
			s.jids = make(map[string]bool)
		}
		s.jids[j.Bare().String()] = true
	}
}

func (s *set) remove(entry string) {
	entry = strings.TrimSpace(entry)
	switch {
	case isHash(entry):
		delete(s.hashes, strings.ToLower(entry))
	case !strings.Contains(entry, "@"):
		delete(s.domains, strings.ToLower(strings.TrimSuffix(entry, ".")))
	default:
		if j, err := jid.Parse(entry); err == nil {
			delete(s.jids, j.Bare().String())
		}
	}
}

func (s *set) len() int { return len(s.domains) + len(s.jids) + len(s.hashes) }

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// matches reports whether j is on s: its domain or a parent domain, its
// bare JID, or the hash of either.
func (s *set) matches(j jid.JID, bare, domain string, hashes *[2]string) bool {
	if s.domains != nil {
		for d := domain; d != ""; {
			if s.domains[d] {
				return true
			}
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
		}
	}
	if s.jids != nil && j.Localpart() != "" && s.jids[bare] {
		return true
	}
	if len(s.hashes) > 0 {
		if hashes[0] == "" {
			hashes[0], hashes[1] = hash(bare), hash(domain)
		}
		return s.hashes[hashes[0]] || s.hashes[hashes[1]]
	}
	return false
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "abuse" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.log = m.srv.Log()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "abuse"); err != nil {
		return err
	}
	if m.Reports == nil {
		m.Reports, _ = m.srv.Storage.(storage.Reports)
	}
	list, err := m.Store.Blocklist(ctx, ListKey)
	if err != nil {
		return fmt.Errorf("abuse: reading the server's block list: %w", err)
	}
	var own set
	for _, e := range list {
		own.add(e)
	}
	m.mu.Lock()
	m.own = own
	m.feeds = make(map[string]set)
	m.mu.Unlock()
	// Before the users' own block lists and everything else.
	r.InPhase(treff.PhaseFilter).OnAccountStanza(m.inbound)
	r.InPhase(treff.PhaseFilter).OnAccountOutbound(m.outbound)
	if len(m.RTBL) > 0 {
		r.OnHostStanza(m.notification)
		m.start(m.srv.Context())
	}
	return nil
}

// Blocked reports whether j is on the server's block list or an RTBL
// (by its domain, a parent domain, its bare JID or their hashes).
// Local JIDs are never blocked.
func (m *Module) Blocked(j jid.JID) bool {
	domain := j.Domainpart()
	if domain == "" || m.srv != nil && m.srv.Serves(domain) {
		return false
	}
	bare := j.Bare().String()
	var hashes [2]string
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.own.matches(j, bare, domain, &hashes) {
		return true
	}
	for _, s := range m.feeds {
		if s.matches(j, bare, domain, &hashes) {
			return true
		}
	}
	return false
}

// blockedAddress reports whether j is blocked by its bare JID (or its
// hash) but not by its domain.
func (m *Module) blockedAddress(j jid.JID) bool {
	if j.Localpart() == "" {
		return false
	}
	return !m.Blocked(j.Domain())
}

// normalise checks a block list entry: a domain, a bare JID or a SHA-256
// hash (hex).
func normalise(entry string) (string, error) {
	entry = strings.TrimSpace(entry)
	if isHash(entry) {
		return strings.ToLower(entry), nil
	}
	j, err := jid.Parse(entry)
	if err != nil || j.Resourcepart() != "" {
		return "", fmt.Errorf("%q is not a domain, a bare JID or a SHA-256 hash", entry)
	}
	return j.String(), nil
}

// normaliseAll normalises each entry (see normalise).
func normaliseAll(entries []string) ([]string, error) {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		n, err := normalise(e)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Block adds entries (domains, bare JIDs or SHA-256 hashes of either) to
// the server's block list. Local domains and accounts are refused.
func (m *Module) Block(ctx context.Context, entries ...string) error {
	add, err := normaliseAll(entries)
	if err != nil {
		return err
	}
	for _, n := range add {
		if j, err := jid.Parse(n); err == nil && !isHash(n) && m.srv.Serves(j.Domainpart()) {
			return fmt.Errorf("%s is served here: delete or suspend the account instead", n)
		}
	}
	if len(add) == 0 {
		return errors.New("nothing to block")
	}
	if err := m.Store.Block(ctx, ListKey, add); err != nil {
		return err
	}
	m.mu.Lock()
	for _, e := range add {
		m.own.add(e)
	}
	m.mu.Unlock()
	m.log.Info("server block list changed", "blocked", strings.Join(add, " "))
	return nil
}

// Unblock removes entries from the server's block list; entries not on
// it are ignored.
func (m *Module) Unblock(ctx context.Context, entries ...string) error {
	rm, err := normaliseAll(entries)
	if err != nil {
		return err
	}
	if err := m.Store.Unblock(ctx, ListKey, rm); err != nil {
		return err
	}
	m.mu.Lock()
	for _, e := range rm {
		m.own.remove(e)
	}
	m.mu.Unlock()
	m.log.Info("server block list changed", "unblocked", strings.Join(rm, " "))
	return nil
}

// List returns the server's own block list, sorted, and the number of
// entries each RTBL holds, by feed.
func (m *Module) List(ctx context.Context) ([]string, map[string]int, error) {
	list, err := m.Store.Blocklist(ctx, ListKey)
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(list)
	m.mu.RLock()
	defer m.mu.RUnlock()
	feeds := make(map[string]int, len(m.feeds))
	for k, s := range m.feeds {
		feeds[k] = s.len()
	}
	return list, feeds, nil
}

// inbound keeps stanzas from blocked senders away from local accounts:
// messages and requests are answered with <service-unavailable/>, as a
// user's own block list does (XEP-0191), the rest dropped.
func (m *Module) inbound(ctx context.Context, st *treff.Stanza) bool {
	if st.From.Equal(jid.JID{}) || ctx.Value(ownErrorKey{}) != nil || !m.Blocked(st.From) {
		return false
	}
	if blocking.Answered(st) {
		m.answer(ctx, st, stanza.ServiceUnavailable)
	}
	return true
}

// outbound keeps local accounts from sending to blocked addresses: the
// sender learns why. The module's own errors (answers to inbound
// stanzas, sent in a local account's name) go out.
func (m *Module) outbound(ctx context.Context, st *treff.Stanza) bool {
	if st.To.Equal(jid.JID{}) || ctx.Value(ownErrorKey{}) != nil || !m.Blocked(st.To) {
		return false
	}
	if st.Type == "error" || st.Kind == treff.KindPresence || st.Kind == treff.KindIQ && st.Type == "result" {
		return true
	}
	// Say what is blocked: the domain, or the address alone.
	what := st.To.Domainpart()
	if m.blockedAddress(st.To) {
		what = st.To.Bare().String()
	}
	m.answer(ctx, st, stanza.NotAllowed.WithText("this server does not exchange messages with "+what+" (blocked by its admins)"))
	return true
}

// ownErrorKey marks the errors the module sends: in a blocked address's
// name (an answer to a local account's stanza), which inbound lets
// through, and in a local account's name to a blocked address (the
// answer to its stanza), which outbound lets through.
type ownErrorKey struct{}

func (m *Module) answer(ctx context.Context, st *treff.Stanza, e error) {
	reply, err := treff.NewStanza(treff.AppendError(nil, st, e))
	if err != nil {
		m.log.Error("abuse: bad error built", "err", err)
		return
	}
	m.srv.Route(context.WithValue(ctx, ownErrorKey{}, true), reply)
}

// Report keeps a spam report for the admins and tells them; it is meant
// as blocking.Module.OnReport.
func (m *Module) Report(ctx context.Context, r blocking.Report) {
	m.notify.Lock()
	defer m.notify.Unlock()
	sr := storage.Report{Time: r.Time, Reporter: r.Reporter.Bare().String(), Reported: r.Reported.String(), Reason: r.Reason, Text: r.Text}
	for _, id := range r.StanzaIDs {
		sr.MessageIDs = append(sr.MessageIDs, id.By+" "+id.ID)
	}
	if m.Reports != nil {
		if _, err := m.Reports.AddReport(ctx, sr); err != nil {
			m.log.Error("abuse: storing a report failed", "err", err)
		} else {
			m.trim(ctx)
		}
	}
	m.log.Info("spam report", "reporter", sr.Reporter, "reported", sr.Reported, "reason", sr.Reason)
	m.forward(ctx, r.Reporter.Domainpart(), sr)
	m.tellAdmins(ctx, r.Reporter.Domainpart(), "Spam report", DescribeReport(sr)+"\n\n`community reports` lists all reports.")
}

// forward sends the report to ForwardTo, without the reporter.
func (m *Module) forward(ctx context.Context, domain string, r storage.Report) {
	if m.ForwardTo.Equal(jid.JID{}) {
		return
	}
	esc := func(s string) string { return string(treff.AppendEscaped(nil, s)) }
	raw := "<message type='normal' from='" + esc(domain) + "' to='" + esc(m.ForwardTo.String()) + "'><body>" +
		esc("Spam report from "+domain+": "+r.Reported+" ("+strings.TrimPrefix(r.Reason, "urn:xmpp:reporting:")+")") +
		"</body><report xmlns='urn:xmpp:reporting:1' reason='" + esc(r.Reason) + "'><jid xmlns='urn:xmpp:jid:0'>" + esc(r.Reported) + "</jid>"
	if r.Text != "" {
		raw += "<text>" + esc(r.Text) + "</text>"
	}
	raw += "</report></message>"
	st, err := treff.NewStanza([]byte(raw))
	if err != nil {
		m.log.Error("abuse: bad report forward built", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}

// trim drops the oldest reports over MaxReports.
func (m *Module) trim(ctx context.Context) {
	max := m.MaxReports
	if max <= 0 {
		max = DefaultMaxReports
	}
	list, err := m.Reports.ListReports(ctx)
	if err != nil || len(list) <= max {
		return
	}
	for _, r := range list[:len(list)-max] {
		m.Reports.DeleteReport(ctx, r.ID)
	}
}

// DescribeReport says a report in one line (and the reporter's text).
func DescribeReport(r storage.Report) string {
	reason := strings.TrimPrefix(r.Reason, "urn:xmpp:reporting:")
	s := fmt.Sprintf("%s %s reported %s (%s)", r.Time.UTC().Format("2006-01-02 15:04 UTC"), r.Reporter, r.Reported, reason)
	if len(r.MessageIDs) > 0 {
		s += fmt.Sprintf(", %d message id(s): %s", len(r.MessageIDs), strings.Join(r.MessageIDs, ", "))
	}
	if r.Text != "" {
		s += ": " + r.Text
	}
	return s
}

// tellAdmins sends each admin on domain (all admins if none is there) a
// message from the server.
func (m *Module) tellAdmins(ctx context.Context, domain, subject, body string) {
	for _, a := range m.Admins {
		to, err := jid.Parse(a)
		if err != nil {
			continue
		}
		from := domain
		if from == "" || !m.srv.IsLocal(from) {
			from = to.Domainpart()
		}
		raw := "<message type='normal' from='" + string(treff.AppendEscaped(nil, from)) + "' to='" + string(treff.AppendEscaped(nil, to.String())) +
			"'><subject>" + string(treff.AppendEscaped(nil, subject)) + "</subject><body>" + string(treff.AppendEscaped(nil, body)) + "</body></message>"
		st, err := treff.NewStanza([]byte(raw))
		if err != nil {
			m.log.Error("abuse: bad admin message built", "err", err)
			continue
		}
		m.srv.Route(ctx, st)
	}
}

// NotifyRegistration tells the admins of a new account; it is meant as
// register.Module.OnRegistered.
func (m *Module) NotifyRegistration(ctx context.Context, user jid.JID, invited bool) {
	how := "by in-band registration"
	if invited {
		how = "with an invitation"
	}
	m.tellAdmins(ctx, user.Domainpart(), "New account", fmt.Sprintf("%s was registered %s at %s. community suspend %s stops it; community users -recent lists new accounts.",
		user.Bare(), how, time.Now().UTC().Format("2006-01-02 15:04 UTC"), user.Bare()))
}
