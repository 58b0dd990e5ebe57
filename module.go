package treff

import (
	"context"
	"fmt"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/saslmech"
	"net"
	"slices"
)

// Module adds a feature to a Server: IQ handlers, stream features, service
// discovery entries and hooks. Built-in features are modules on this same
// API; a plugin author needs nothing else.
//
// Modules are values listed in Server.Modules; there is no global registry,
// so two servers in one process can run different modules.
type Module interface {
	// Name identifies the module in logs and errors, e.g. "roster".
	Name() string
	// Setup is called once, before the server accepts connections, in the
	// order of Server.Modules. It registers everything the module needs on
	// r and may keep r.Server() for later use. An error stops the server
	// from starting.
	Setup(ctx context.Context, r *Registry) error
}

// Stopper is implemented by modules that hold resources (goroutines,
// timers, files). Stop is called once during Shutdown or Close, after all
// sessions ended, and also after a failed start-up, so it must cope with a
// module whose Setup did not run or failed.
type Stopper interface {
	Stop(ctx context.Context) error
}

// IQHandler answers IQ get and set requests for one payload namespace.
//
// HandleIQ returns the serialised payload of the result (nil for an empty
// result) or an error: a stanza.Condition or stanza.Error, also wrapped
// (see stanza.FromError), is sent to the requester as is, any other error
// is logged and answered with <internal-server-error/>. Return
// ErrNoReply after answering (or arranging to answer) yourself through
// Server.Route. HandleIQ is called concurrently, from the sending session's
// goroutine: keep it short, and never block on the sender's own queue.
type IQHandler interface {
	HandleIQ(ctx context.Context, iq *Stanza) ([]byte, error)
}

// IQHandlerFunc adapts a function to an IQHandler.
type IQHandlerFunc func(ctx context.Context, iq *Stanza) ([]byte, error)

// HandleIQ calls f(ctx, iq).
func (f IQHandlerFunc) HandleIQ(ctx context.Context, iq *Stanza) ([]byte, error) {
	return f(ctx, iq)
}

// ErrNoReply is returned by an IQHandler that has sent or will send the
// response itself.
var ErrNoReply = fmt.Errorf("treff: handler replies itself")

// StanzaHandler receives every stanza addressed to a domain registered with
// Registry.HandleDomain (a service such as conference.example.org).
type StanzaHandler interface {
	HandleStanza(ctx context.Context, st *Stanza)
}

// StanzaHandlerFunc adapts a function to a StanzaHandler.
type StanzaHandlerFunc func(ctx context.Context, st *Stanza)

// HandleStanza calls f(ctx, st).
func (f StanzaHandlerFunc) HandleStanza(ctx context.Context, st *Stanza) { f(ctx, st) }

// SessionHook is called with a client session at a point of its life.
type SessionHook func(ctx context.Context, s *Session)

// StanzaHook inspects a stanza at a point of its way through the server. It
// returns true if it consumed the stanza, which then goes no further (and
// later hooks do not see it).
type StanzaHook func(ctx context.Context, st *Stanza) (handled bool)

// Phase says when a stream feature is offered.
type Phase uint8

// Stream feature phases.
const (
	// BeforeAuth features are offered with the SASL mechanisms on a secure
	// stream that is not authenticated yet (e.g. in-band registration).
	BeforeAuth Phase = iota + 1
	// AfterAuth features are offered with resource binding (e.g. stream
	// management).
	AfterAuth
)

// StreamFeature is a stream feature a module offers (RFC 6120 4.3).
type StreamFeature struct {
	// Phase says when to offer it.
	Phase Phase
	// XML is the serialised feature element, e.g.
	// <register xmlns='http://jabber.org/features/iq-register'/>.
	XML string
	// Render, if set, is called instead of using XML each time the feature
	// is offered, for features that depend on what all modules registered
	// (such as entity capabilities) or that change at run time.
	Render func() string
	// Offer, if set, is called instead of Render or XML each time the
	// feature is offered, with the stream it is offered on, for features
	// that depend on the stream (the SASL mechanisms offered on it, say).
	// "" leaves the feature out.
	Offer func(n *Negotiation) string
}

func (f StreamFeature) xml(c *conn) string {
	switch {
	case f.Offer != nil:
		return f.Offer(&Negotiation{c: c})
	case f.Render != nil:
		return f.Render()
	}
	return f.XML
}

// Registry is what a Module registers its parts on during Setup. It is not
// safe for use after Setup returns.
type Registry struct {
	srv    *Server
	module string
	m      *modules
	phase  HookPhase // of hooks registered on it; 0: PhaseHandle
}

// modules holds everything registered by all modules. It is built during
// start-up and read-only afterwards, so lookups need no lock.
type modules struct {
	iq           map[string]iqEntry // by payload namespace, addressed to a host
	accountIQ    map[string]iqEntry // by namespace, addressed to an account
	preAuthIQ    map[string]iqEntry // on an authenticated-less stream
	domains      map[string]domainEntry
	remote       *domainEntry
	features     []string
	accountFeats []string
	identities   []discoinfo.Identity
	accountIDs   []discoinfo.Identity
	items        []discoinfo.Item
	streamFeats  []hook[StreamFeature]
	mechs        []hook[saslmech.Mechanism]
	nonzas       map[string]hook[NonzaHandler]
	negotiation  map[string]hook[NegotiationHandler]
	urgent       [][]byte // namespaces marked urgent, quoted both ways
	unacked      []hook[StanzaHook]
	keeper       *hook[Keeper]
	bound        []hook[SessionHook]
	closed       []hook[SessionHook]
	fromClient   []hook[StanzaHook]
	toAccount    []hook[StanzaHook]
	toHost       []hook[StanzaHook]
	outbound     []hook[StanzaHook]
	delivered    []hook[DeliveredHook]
	undeliver    []hook[StanzaHook]
	deleted      []hook[AccountHook]
	passwd       []hook[AccountHook]
	guards       []hook[LoginGuard]
	discoNodes   map[string]discoinfo.Node
}

type iqEntry struct {
	module string
	h      IQHandler
}

// domainEntry is a stanza handler and the module that registered it.
type domainEntry struct {
	module string
	h      StanzaHandler
}

// hook is a hook, the module that registered it (for the log when it
// panics) and its phase.
type hook[H any] struct {
	module string
	h      H
	phase  HookPhase
}

// HookPhase orders hooks of one kind (say OnAccountStanza) from several
// modules: every PhaseFilter hook runs before every PhaseStamp hook,
// which run before the PhaseHandle ones, and PhaseObserve come last.
// Within a phase, hooks run in the order of Server.Modules. A module
// states its hooks' phase with Registry.InPhase; without it, hooks are in
// PhaseHandle.
type HookPhase uint8

// Hook phases, in the order they run.
const (
	// PhaseFilter hooks decide whether a stanza goes on at all (block
	// lists, spam limits): returning true drops it, before any other
	// module has seen it.
	PhaseFilter HookPhase = iota + 1
	// PhaseStamp hooks change the stanza with Stanza.Rewrite (an archive
	// adding a stanza-id, an avatar hash added to presence) so that the
	// later phases see it changed.
	PhaseStamp
	// PhaseHandle hooks act on the stanza and may consume it (the roster
	// module distributes presence); the default.
	PhaseHandle
	// PhaseObserve hooks see the stanza as it is finally routed (message
	// carbons copy what was archived and stamped) and should not consume
	// it.
	PhaseObserve
)

// InPhase returns a Registry whose hook registrations (OnClientStanza,
// OnAccountStanza, OnAccountOutbound, OnDelivered, OnUndeliverable,
// OnUnacked, OnSessionBound, OnSessionClosed, OnAccountDeleted) run in
// phase p; everything else registers as on r.
func (r *Registry) InPhase(p HookPhase) *Registry {
	c := *r
	c.phase = p
	return &c
}

// newHook makes a hook registered on r.
func newHook[H any](r *Registry, h H) hook[H] {
	p := r.phase
	if p == 0 {
		p = PhaseHandle
	}
	return hook[H]{module: r.module, h: h, phase: p}
}

// sortHooks orders every hook list by phase, keeping the order of
// registration within a phase.
func (m *modules) sortHooks() {
	byPhase := func(a, b HookPhase) int { return int(a) - int(b) }
	sortPhase(m.bound, byPhase)
	sortPhase(m.closed, byPhase)
	sortPhase(m.fromClient, byPhase)
	sortPhase(m.toAccount, byPhase)
	sortPhase(m.outbound, byPhase)
	sortPhase(m.delivered, byPhase)
	sortPhase(m.undeliver, byPhase)
	sortPhase(m.unacked, byPhase)
	sortPhase(m.deleted, byPhase)
}

func sortPhase[H any](hs []hook[H], cmp func(a, b HookPhase) int) {
	slices.SortStableFunc(hs, func(a, b hook[H]) int { return cmp(a.phase, b.phase) })
}

// Server returns the server the module is being set up for.
func (r *Registry) Server() *Server { return r.srv }

func (r *Registry) addIQ(m *map[string]iqEntry, kind, ns string, h IQHandler) {
	if *m == nil {
		*m = make(map[string]iqEntry)
	}
	if old, ok := (*m)[ns]; ok {
		panic(fmt.Sprintf("treff: module %s registers %s IQ handler for %q, already registered by %s", r.module, kind, ns, old.module))
	}
	(*m)[ns] = iqEntry{r.module, h}
}

// HandleIQ registers h for IQ get/set requests with a payload in namespace
// ns addressed to one of the server's hosts (or with no 'to' when no account
// handler takes the namespace). It panics if ns is already taken: that is a
// programming error found at start-up.
func (r *Registry) HandleIQ(ns string, h IQHandler) { r.addIQ(&r.m.iq, "host", ns, h) }

// HandleAccountIQ registers h for IQ get/set requests with a payload in
// namespace ns addressed to a local account's bare JID, or with no 'to'
// (RFC 6120 10.3.3: the server answers on behalf of the account, e.g. roster
// or vCard). The handler finds the account in iq.To, or in iq.From's bare
// JID when iq.To is empty.
func (r *Registry) HandleAccountIQ(ns string, h IQHandler) {
	r.addIQ(&r.m.accountIQ, "account", ns, h)
}

// HandlePreAuthIQ registers h for IQ requests in namespace ns that a client
// sends on a TLS-protected stream before it authenticates (XEP-0077
// in-band registration). The stanza has no From; iq.To is the host the
// stream is for; PeerAddr(ctx) is the client's address and StreamID(ctx)
// tells requests on one stream from those on another.
func (r *Registry) HandlePreAuthIQ(ns string, h IQHandler) {
	r.addIQ(&r.m.preAuthIQ, "pre-auth", ns, h)
}

// HandleDomain makes the server accept stanzas for domain (usually a
// subdomain of a host, like conference.example.org) and hand all of them to
// h. It panics if the domain is taken.
func (r *Registry) HandleDomain(domain string, h StanzaHandler) {
	if r.m.domains == nil {
		r.m.domains = make(map[string]domainEntry)
	}
	if _, ok := r.m.domains[domain]; ok {
		panic(fmt.Sprintf("treff: module %s registers domain %q twice", r.module, domain))
	}
	r.m.domains[domain] = domainEntry{r.module, h}
}

// HandleRemote makes h receive every stanza addressed to a domain that is
// neither a host nor a service domain (the server-to-server module). It
// panics if another module registered already. Without it such stanzas are
// answered with <remote-server-not-found/>.
func (r *Registry) HandleRemote(h StanzaHandler) {
	if r.m.remote != nil {
		panic(fmt.Sprintf("treff: module %s registers a remote handler twice", r.module))
	}
	r.m.remote = &domainEntry{r.module, h}
}

// AddFeature adds a service discovery feature of the server's hosts.
func (r *Registry) AddFeature(feature string) {
	if !slices.Contains(r.m.features, feature) {
		r.m.features = append(r.m.features, feature)
	}
}

// AddAccountFeature adds a service discovery feature of every account (for
// disco#info queries to a bare JID).
func (r *Registry) AddAccountFeature(feature string) {
	if !slices.Contains(r.m.accountFeats, feature) {
		r.m.accountFeats = append(r.m.accountFeats, feature)
	}
}

// AddIdentity adds a service discovery identity of the server's hosts.
func (r *Registry) AddIdentity(id discoinfo.Identity) { r.m.identities = append(r.m.identities, id) }

// AddAccountIdentity adds a service discovery identity that every account's
// bare JID shows besides account/registered (e.g. pubsub/pep).
func (r *Registry) AddAccountIdentity(id discoinfo.Identity) {
	r.m.accountIDs = append(r.m.accountIDs, id)
}

// AddItem adds a service discovery item of the server's hosts.
func (r *Registry) AddItem(it discoinfo.Item) { r.m.items = append(r.m.items, it) }

// AddStreamFeature offers f in stream negotiation.
func (r *Registry) AddStreamFeature(f StreamFeature) {
	r.m.streamFeats = append(r.m.streamFeats, hook[StreamFeature]{module: r.module, h: f})
}

// OnSessionBound registers a hook run when a client session has bound a
// resource, before it processes any stanza.
func (r *Registry) OnSessionBound(h SessionHook) {
	r.m.bound = append(r.m.bound, newHook(r, h))
}

// OnSessionClosed registers a hook run when a bound client session ends,
// after it left the routing table. The hook must not send to the session.
func (r *Registry) OnSessionClosed(h SessionHook) {
	r.m.closed = append(r.m.closed, newHook(r, h))
}

// OnClientStanza registers a hook run for every stanza a local client sends,
// after its 'from' has been stamped and before routing.
func (r *Registry) OnClientStanza(h StanzaHook) {
	r.m.fromClient = append(r.m.fromClient, newHook(r, h))
}

// OnAccountStanza registers a hook run for every stanza (message, presence
// and IQ) addressed to an existing local account (bare or full JID),
// before the server answers an IQ for the account and before the delivery
// rules pick sessions. A hook that filters (such as a block list) returns
// true to stop the stanza; one that stamps (such as an archive adding a
// stanza-id) may change it with Stanza.Rewrite.
func (r *Registry) OnAccountStanza(h StanzaHook) {
	r.m.toAccount = append(r.m.toAccount, newHook(r, h))
}

// OnHostStanza registers a hook run for every message and presence
// addressed to one of the server's hosts (the server itself, a JID
// without localpart), from anyone: for instance publish-subscribe
// notifications of a subscription the server holds (a real-time block
// list). Returning true stops the stanza from reaching later hooks.
func (r *Registry) OnHostStanza(h StanzaHook) {
	r.m.toHost = append(r.m.toHost, newHook(r, h))
}

// OnAccountOutbound registers a hook run for every stanza that leaves a
// local account for any address: sent by one of its clients (after the
// OnClientStanza hooks) or routed by a module on its behalf, such as a
// presence broadcast to its contacts or the answer to a probe. Returning
// true drops the stanza; the hook sends any error the sender should see.
func (r *Registry) OnAccountOutbound(h StanzaHook) {
	r.m.outbound = append(r.m.outbound, newHook(r, h))
}

// DeliveredHook is told that a stanza addressed to a local account was
// written to the queues of the sessions in to (at least one). to is
// valid during the call only (the server reuses it): a hook that keeps
// the sessions copies the slice.
type DeliveredHook func(ctx context.Context, st *Stanza, to []*Session)

// OnDelivered registers a hook run after a message or presence for a local
// account was handed to one or more of its sessions (message carbons use
// it to copy the message to the sessions that did not get it).
func (r *Registry) OnDelivered(h DeliveredHook) {
	r.m.delivered = append(r.m.delivered, newHook(r, h))
}

// OnUnacked registers a hook run for each message a session was sent
// but whose receipt its client never acknowledged (XEP-0198), when the
// session ended without being resumed, before the server delivers the
// message again to the account's other sessions or to offline storage.
// A module returns true for a copy it made for that session alone (a
// carbon, an archive query's result), which is then dropped.
func (r *Registry) OnUnacked(h StanzaHook) {
	r.m.unacked = append(r.m.unacked, newHook(r, h))
}

// OnUndeliverable registers a hook run for a message to an existing local
// account that no session may receive (RFC 6121 8.5.2.2, e.g. to store it
// offline). If no hook handles it, the sender gets the error the rules say.
func (r *Registry) OnUndeliverable(h StanzaHook) {
	r.m.undeliver = append(r.m.undeliver, newHook(r, h))
}

// AddDiscoNode makes h answer disco#info and disco#items requests for node
// on the server's hosts. It panics if the node is taken.
func (r *Registry) AddDiscoNode(node string, h discoinfo.Node) {
	if r.m.discoNodes == nil {
		r.m.discoNodes = make(map[string]discoinfo.Node)
	}
	if _, ok := r.m.discoNodes[node]; ok {
		panic(fmt.Sprintf("treff: module %s registers disco node %q twice", r.module, node))
	}
	r.m.discoNodes[node] = h
}

// DiscoNode returns the handler a module registered for node, if any.
func (srv *Server) DiscoNode(node string) (discoinfo.Node, bool) {
	if srv.init() != nil {
		return nil, false
	}
	h, ok := srv.mods.discoNodes[node]
	return h, ok
}

// Features returns the service discovery features registered by modules for
// the server's hosts (account is false) or for accounts (account is true).
// It sets up the modules if serving has not started yet.
func (srv *Server) Features(account bool) []string {
	if srv.init() != nil {
		return nil
	}
	if account {
		return slices.Clone(srv.mods.accountFeats)
	}
	return slices.Clone(srv.mods.features)
}

// Items returns the service discovery items registered by modules.
func (srv *Server) Items() []discoinfo.Item {
	if srv.init() != nil {
		return nil
	}
	return slices.Clone(srv.mods.items)
}

// Identities returns the service discovery identities registered by
// modules for the server's hosts, or with account set, for accounts.
func (srv *Server) Identities(account bool) []discoinfo.Identity {
	if srv.init() != nil {
		return nil
	}
	if account {
		return slices.Clone(srv.mods.accountIDs)
	}
	return slices.Clone(srv.mods.identities)
}

type peerAddrKey struct{}

// PeerAddr returns the network address of the client whose request a
// pre-authentication IQ handler is serving, or nil elsewhere. It is meant
// for in-memory abuse limits: Treff's promise is that no IP address is
// written to storage or logs, so handlers must not keep it longer.
func PeerAddr(ctx context.Context) net.Addr {
	a, _ := ctx.Value(peerAddrKey{}).(net.Addr)
	return a
}

type streamIDKey struct{}

// StreamID returns the ID of the stream whose request a pre-authentication
// IQ handler is serving (the same for every request on one stream until
// it authenticates), or "" elsewhere. A handler keeps per-stream state,
// such as an invitation token presented before registering, under it.
func StreamID(ctx context.Context) string {
	id, _ := ctx.Value(streamIDKey{}).(string)
	return id
}
