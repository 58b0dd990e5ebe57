// Package im bundles the modules of an instant-messaging server (RFC 6121
// and the XEPs every client expects), so that an embedding program needs
// one line:
//
//	srv.Modules = im.Modules()
//
// Programs that want to configure a module build the list themselves; this
// package only wires the modules together and holds no logic of its own.
package im

import (
	"context"
	"slices"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/carbons"
	"github.com/treff-im/treff/csi"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/last"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/pep"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/private"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/vcard"
	"github.com/treff-im/treff/version"
	"github.com/treff-im/treff/xtime"
)

// Modules returns fresh instances, with default settings, of: blocking
// (XEP-0191), vCard with avatars (XEP-0054, XEP-0153, XEP-0398), private
// storage (XEP-0049), roster (roster, subscriptions, presence), offline
// messages, service discovery, ping, software version, entity time, last
// activity, PEP (XEP-0163, for OMEMO, avatars and bookmarks), message
// carbons (XEP-0280) and client state indication (XEP-0352). The server's
// Storage must implement the storage interfaces they use (memstore and
// boltstore do).
//
// The modules' hooks say their own phase (treff.HookPhase): block lists
// filter before the others see a stanza, the vCard module and an archive
// stamp before the roster broadcasts presence and carbons copy messages.
// Message archiving (package mam) is not included: whether to keep users'
// messages is the operator's decision.
func Modules() []treff.Module {
	return Devices(&roster.Module{}, &offline.Module{}, &disco.Module{}, &ping.Module{},
		&version.Module{}, &xtime.Module{}, &last.Module{})
}

// Devices returns the modules that keep a user's devices in step around
// the given core modules (roster, offline and the like), in the order
// they are listed in: blocking, vCard and private storage first, then
// core, then PEP, carbons, client state indication, stream management
// and SASL2 (XEP-0388) with Bind 2 (XEP-0386) and stream management's
// resumption inline (the hooks' phases order what must be ordered,
// whatever the list's order). vCard and private storage are wired to PEP
// for the XEP-0398 avatar and XEP-0411 bookmark conversions. A message
// archive (package mam) goes among core, and so does a configured
// *sm.Module (else one with the defaults is added) or *sasl2.Module
// (else SASL2 builds one, with carbons, client state indication and
// stream management as Bind 2 features).
func Devices(core ...treff.Module) []treff.Module {
	p := &pep.Module{}
	v := &vcard.Module{PEP: p}
	p.OnPublish = func(ctx context.Context, owner jid.JID, node string) {
		if node == "urn:xmpp:avatar:metadata" {
			v.InvalidateAvatar(owner)
		}
	}
	mods := []treff.Module{&blocking.Module{}, v, &private.Module{Bookmarks: p}}
	mods = append(mods, core...)
	cm, cs := &carbons.Module{}, &csi.Module{}
	mods = append(mods, p, cm, cs)
	var stream *sm.Module
	for _, m := range core {
		if s, ok := m.(*sm.Module); ok {
			stream = s
		}
	}
	if stream == nil {
		stream = &sm.Module{}
		mods = append(mods, stream)
	}
	if !slices.ContainsFunc(core, func(m treff.Module) bool { _, ok := m.(*sasl2.Module); return ok }) {
		mods = append(mods, SASL2(stream, cm, cs, stream))
	}
	return mods
}

// SASL2 returns XEP-0388 SASL2 with stream management's inline resumption
// (sm may be nil) and XEP-0386 Bind 2, whose inline features are
// features (carbons, client state indication, stream management: the
// same module values as in the server's Modules).
func SASL2(stream *sm.Module, features ...bind2.Feature) *sasl2.Module {
	m := &sasl2.Module{}
	if stream != nil {
		m.Inline = append(m.Inline, stream)
	}
	m.Inline = append(m.Inline, &bind2.Module{Features: features})
	return m
}
