package antispam_test

import (
	"fmt"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/storage/memstore"
)

// An open server's defences: stricter limits for accounts younger than
// a week, room creations told from joins by the group chat module, and
// strangers' messages quarantined unless a user chooses otherwise with
// the ad-hoc command.
func Example() {
	rooms := &muc.Module{}
	ah := &adhoc.Module{}
	limits := &antispam.Limits{
		NewAccountAge: 7 * 24 * time.Hour,
		Strangers:     ratelimit.Limit{N: 20, Period: time.Hour},
		RoomExists:    rooms.RoomExists,
	}
	filter := &antispam.Filter{
		Default:   antispam.Quarantine,
		Blocklist: antispam.NewDomains("spam.example"),
		AdHoc:     ah,
	}
	srv := &treff.Server{
		Hosts:   []treff.Host{{Domain: "example.org"}},
		Storage: memstore.New(),
		Modules: []treff.Module{rooms, limits, filter, ah},
	}
	if err := srv.Setup(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(limits.Strangers.Text())
	// Output: 20 per 1h
}
