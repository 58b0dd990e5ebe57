package main

import (
	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/ratelimit"
)

// addAntispam sets the server's pre-authentication limit and adds the
// limits on local accounts' traffic and the stranger filter (package
// antispam), whose users' commands go to ah.
func addAntispam(srv *treff.Server, cfg Config, ah *adhoc.Module) {
	srv.PreAuthIQs = orOff(cfg.LimitPreAuth)
	age := cfg.NewAccountAge
	if age == 0 {
		age = -1 // no account is new
	}
	limits := &antispam.Limits{
		NewAccountAge: age,
		Strangers:     orOff(cfg.LimitStrangers),
		Messages:      orOff(cfg.LimitMessages),
		Joins:         orOff(cfg.LimitJoins),
		Creations:     orOff(cfg.LimitRoomCreations),
		Uploads:       orOff(cfg.LimitUploads),
	}
	for _, m := range srv.Modules {
		if rooms, ok := m.(*muc.Module); ok {
			limits.RoomExists = rooms.RoomExists
		}
	}
	srv.Modules = append(srv.Modules, limits, &antispam.Filter{Default: cfg.FilterStrangers, AdHoc: ah})
}

// orOff turns the config's "none" (the zero Limit) into the modules' off
// (N < 0); their zero means the default.
func orOff(l ratelimit.Limit) ratelimit.Limit {
	if l.None() {
		return ratelimit.Limit{N: -1}
	}
	return l
}
