package fast

import (
	"context"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/storage"
)

// NodeDevices is the ad-hoc command (XEP-0050) with which a user lists
// the devices that log in with FAST tokens and revokes their tokens.
const NodeDevices = "urn:treff:fast#devices"

// DescribeDevice returns one line about d for people: its user agent id,
// software, device and last use.
func DescribeDevice(d storage.FastDevice) string {
	s := d.Agent
	switch {
	case d.Software != "" && d.Device != "":
		s += " (" + d.Software + " on " + d.Device + ")"
	case d.Software != "" || d.Device != "":
		s += " (" + d.Software + d.Device + ")"
	}
	if d.LastUsed.IsZero() {
		return s + ", never used"
	}
	return s + ", last used " + d.LastUsed.UTC().Format(time.DateTime) + " UTC"
}

func (m *Module) devicesCommand() adhoc.Command {
	return adhoc.Command{
		Node: NodeDevices,
		Name: "Devices logged in with a token",
		Allowed: func(ctx context.Context, from jid.JID) bool {
			return from.Localpart() != ""
		},
		Form: func(ctx context.Context, from jid.JID) *adhoc.Form {
			devs, err := m.Devices(ctx, from)
			if err != nil || len(devs) == 0 {
				return nil // runs at once and says so
			}
			lines := make([]string, len(devs))
			agents := make([]string, len(devs))
			for i, d := range devs {
				lines[i] = DescribeDevice(d)
				agents[i] = d.Agent
			}
			return &adhoc.Form{
				Title:        "Devices logged in with a token",
				Instructions: "These devices log in without your password (XEP-0484 FAST tokens):\n" + strings.Join(lines, "\n") + "\nPick those to log out; they will need the password again.",
				Fields: []adhoc.Field{
					{Var: "revoke", Type: "list-multi", Label: "Log out", Options: agents},
				},
			}
		},
		Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
			var done []string
			for _, agent := range v["revoke"] {
				if err := m.Revoke(ctx, from, agent); err == nil {
					done = append(done, agent)
				}
			}
			devs, err := m.Devices(ctx, from)
			if err != nil {
				return adhoc.Result{}, err
			}
			var note []string
			if len(done) > 0 {
				note = append(note, fmt.Sprintf("Logged out: %s.", strings.Join(done, ", ")))
			}
			if len(devs) == 0 {
				note = append(note, "No device logs in with a token.")
			} else {
				note = append(note, "Devices logged in with a token:")
				for _, d := range devs {
					note = append(note, DescribeDevice(d))
				}
			}
			return adhoc.Result{Note: strings.Join(note, "\n")}, nil
		},
	}
}
