package fast

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/storage"
)

// htMechanism is one HT-SHA-256-* mechanism (draft-schmaus-kitten-sasl-ht-09)
// over the module's tokens. It works only inside SASL2: the token belongs
// to the user agent of the <authenticate/> the context carries.
type htMechanism struct {
	m    *Module
	name string
}

func (h htMechanism) Name() string { return h.name }

// Offer implements saslmech.Offerer: -EXPR needs tls-exporter data.
func (h htMechanism) Offer(s *saslmech.Stream) bool {
	_, ok := cbData(h.name, s)
	return ok
}

func (h htMechanism) Start(ctx context.Context, s *saslmech.Stream) saslmech.Exchange {
	x := &htExchange{m: h.m, mech: h.name, s: s}
	if a, ok := sasl2.FromContext(ctx); ok {
		x.req = readRequest(a)
	} else {
		x.noSASL2 = true
	}
	return x
}

// htExchange is one run of an HT mechanism.
type htExchange struct {
	m       *Module
	mech    string
	s       *saslmech.Stream
	req     request
	noSASL2 bool
	done    bool
	user    string // the authcid, once read
}

// Username implements saslmech.Identified.
func (x *htExchange) Username() string { return x.user }

// tlsExporterLabel is the label of tls-exporter channel binding data
// (RFC 9266 section 2).
const tlsExporterLabel = "EXPORTER-Channel-Binding"

// cbData returns the channel binding data of mechanism mech on stream s,
// and whether there is any.
func cbData(mech string, s *saslmech.Stream) ([]byte, bool) {
	switch mech {
	case MechNone:
		return nil, true
	case MechExpr:
		if s == nil || s.TLS == nil {
			return nil, false
		}
		ekm, err := s.TLS.ExportKeyingMaterial(tlsExporterLabel, nil, 32)
		if err != nil {
			return nil, false
		}
		return ekm, true
	}
	return nil, false
}

// htHash is HMAC-SHA-256(token, label || cb), the initiator-hashed-token
// (label "Initiator") and the responder-msg (label "Responder") of the
// draft.
func htHash(token, label string, cb []byte) []byte {
	h := hmac.New(sha256.New, []byte(token))
	h.Write([]byte(label))
	h.Write(cb)
	return h.Sum(nil)
}

// Step takes initiator-msg = authcid NUL initiator-hashed-token and
// returns the responder-msg as the additional data of <success/>.
func (x *htExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil || x.done {
		// Client-first, one message.
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	}
	x.done = true
	if x.noSASL2 {
		return nil, jid.JID{}, &saslmech.Error{Condition: "invalid-mechanism", Text: "FAST tokens work only with SASL2"}
	}
	if x.req.bad != "" {
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request", Text: x.req.bad}
	}
	authcid, proof, ok := bytes.Cut(in, []byte{0})
	x.user = string(authcid)
	if !ok || len(authcid) == 0 || len(proof) != sha256.Size {
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	}
	user, err := x.s.Account(string(authcid))
	if err != nil {
		return nil, jid.JID{}, err
	}
	cb, ok := cbData(x.mech, x.s)
	if !ok {
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request", Text: "no channel binding data for " + x.mech + " on this stream"}
	}
	agent := x.req.agent.ID
	if agent == "" || len(agent) > MaxAgentID {
		return nil, jid.JID{}, saslmech.ErrNotAuthorized
	}
	out, err := x.m.verify(ctx, user.String(), x.mech, cb, proof, x.req)
	if err != nil {
		return nil, jid.JID{}, err
	}
	return out, user, nil
}

// verify checks proof against the tokens of the user's device for
// mechanism mech, and on success updates the device's slots, and returns
// the responder-msg.
func (m *Module) verify(ctx context.Context, user, mech string, cb, proof []byte, req request) ([]byte, error) {
	agent := req.agent.ID
	mu := m.lock(user, agent)
	mu.Lock()
	defer mu.Unlock()
	d, err := m.tokens.FastDevice(ctx, user, agent)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, saslmech.ErrNotAuthorized
	}
	if err != nil {
		return nil, err
	}
	var hit *storage.FastToken
	var token string
	// The newer token first: its first use retires the older one.
	for _, t := range []*storage.FastToken{&d.Next, &d.Current} {
		if len(t.ID) == 0 || t.Mechanism != mech {
			continue
		}
		tok := m.token(user, agent, *t)
		if hmac.Equal(htHash(tok, "Initiator", cb), proof) {
			hit, token = t, tok
			break
		}
	}
	if hit == nil {
		return nil, saslmech.ErrNotAuthorized
	}
	now := m.now()
	if !now.Before(hit.Expires) {
		*hit = storage.FastToken{}
		if err := m.save(ctx, user, d); err != nil {
			return nil, err
		}
		return nil, &saslmech.Error{Condition: "credentials-expired", Text: "the token has expired"}
	}
	if req.counted {
		if req.count < hit.MinCount {
			m.log.Warn("fast: a token's count was used before (replay?)", "jid", user)
			return nil, saslmech.ErrNotAuthorized
		}
		hit.MinCount = req.count + 1
	}
	if hit == &d.Next {
		d.Current, d.Next = d.Next, storage.FastToken{}
	}
	if req.invalidate {
		// Log the device out: no token of it works any more.
		d.Current, d.Next = storage.FastToken{}, storage.FastToken{}
	}
	d.LastUsed = now
	if req.agent.Software != "" || req.agent.Device != "" {
		d.Software, d.Device = req.agent.Software, req.agent.Device
	}
	if err := m.save(ctx, user, d); err != nil {
		return nil, err
	}
	return htHash(token, "Responder", cb), nil
}

// save stores d, or removes it if it has no token left.
func (m *Module) save(ctx context.Context, user string, d storage.FastDevice) error {
	if len(d.Current.ID) == 0 && len(d.Next.ID) == 0 {
		return m.tokens.DeleteFastDevice(ctx, user, d.Agent)
	}
	return m.tokens.PutFastDevice(ctx, user, d)
}
