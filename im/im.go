// Package im bundles the modules of an instant-messaging server (RFC 6121
// and the XEPs every client expects), so that an embedding program needs
// one line:
//
//	srv.Modules = im.Modules()
//
// Programs that want to configure a module build the list themselves; this
// package is only a convenience and holds no logic of its own.
package im

import (
	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/last"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/version"
	"github.com/treff-im/treff/xtime"
)

// Modules returns fresh instances, with default settings, of: roster
// (roster, subscriptions, presence), offline messages, service discovery,
// ping, software version, entity time and last activity.
func Modules() []treff.Module {
	return []treff.Module{
		&roster.Module{},
		&offline.Module{},
		&disco.Module{},
		&ping.Module{},
		&version.Module{},
		&xtime.Module{},
		&last.Module{},
	}
}
