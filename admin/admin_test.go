package admin_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

func newServer(t *testing.T, usersMayInvite bool) (*trefftest.Server, *register.Module) {
	t.Helper()
	ah := &adhoc.Module{}
	reg := &register.Module{Policy: register.Closed}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, ah, reg,
			&admin.Module{AdHoc: ah, Admins: []string{"boss@localhost"}, Register: reg, UsersMayInvite: usersMayInvite,
				LandingURL: func(inv storage.Invite) string { return "https://localhost/invite/" + inv.Token }}}
	})
	ts.AddUser(t, "boss", "boss-secret")
	ts.AddUser(t, "alice", "alice-secret")
	return ts, reg
}

var sessionRe = regexp.MustCompile(`sessionid='([0-9a-f]+)'`)

// run executes a command and, if it has a form, submits fields.
func run(t *testing.T, c *trefftest.Client, node, fields string) string {
	t.Helper()
	c.Send("<iq type='set' id='x1' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + node + "' action='execute'/></iq>")
	got := c.Expect(`<iq type='(result|error)' id='x1'.*?</iq>`)
	if strings.Contains(got, "status='completed'") || strings.Contains(got, "type='error'") {
		return got
	}
	id := sessionRe.FindStringSubmatch(got)[1]
	c.Send("<iq type='set' id='x2' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + node +
		"' sessionid='" + id + "' action='complete'><x xmlns='jabber:x:data' type='submit'>" + fields + "</x></command></iq>")
	return c.Expect(`<iq type='(result|error)' id='x2'.*?</iq>`)
}

func field(name string, values ...string) string {
	s := "<field var='" + name + "'>"
	for _, v := range values {
		s += "<value>" + v + "</value>"
	}
	return s + "</field>"
}

func TestAdminCommands(t *testing.T) {
	ts, reg := newServer(t, false)
	boss := ts.Login(t, "boss", "boss-secret", "r")
	alice := ts.Login(t, "alice", "alice-secret", "r")
	alice.Send("<presence/>")

	// The command list: all of them for the admin, none for alice.
	list := "<iq type='get' id='l' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>"
	boss.Send(list)
	items := boss.Expect(`<iq type='result' id='l'.*?</iq>`)
	for _, n := range []string{"#add-user", "#delete-user", "#change-user-password", "#get-registered-users-num", "#get-registered-users-list", "#get-online-users-num", "#get-online-users-list", "#announce", "urn:treff:admin#registration", "urn:xmpp:invite#invite"} {
		if !strings.Contains(items, n+"'") {
			t.Errorf("admin's command list lacks %s: %s", n, items)
		}
	}
	alice.Send(list)
	if got := alice.Expect(`<iq type='result' id='l'.*?</iq>`); strings.Contains(got, "<item") {
		t.Errorf("alice sees commands: %s", got)
	}
	if got := run(t, alice, admin.NodeAddUser, ""); !strings.Contains(got, "<forbidden") {
		t.Errorf("alice ran add-user: %s", got)
	}

	// Add a user, with a form first.
	got := run(t, boss, admin.NodeAddUser, field("accountjid", "carol@localhost")+field("password", "carol-secret")+field("password-verify", "carol-secret"))
	if !strings.Contains(got, "status='completed'") || !strings.Contains(got, "carol@localhost was created") {
		t.Fatalf("add-user: %s", got)
	}
	ts.Login(t, "carol", "carol-secret", "r")
	if got := run(t, boss, admin.NodeAddUser, field("accountjid", "carol@localhost")+field("password", "x-secret")); !strings.Contains(got, "<conflict") {
		t.Errorf("add-user twice: %s", got)
	}
	if got := run(t, boss, admin.NodeAddUser, field("accountjid", "dan@example.org")+field("password", "x-secret")); !strings.Contains(got, "<not-allowed") {
		t.Errorf("add-user on another domain: %s", got)
	}

	if got := run(t, boss, admin.NodeChangePass, field("accountjid", "carol@localhost")+field("password", "carol-new")); !strings.Contains(got, "was changed") {
		t.Errorf("change-user-password: %s", got)
	}
	ts.Login(t, "carol", "carol-new", "r2")

	if got := run(t, boss, admin.NodeUsersNum, ""); !regexp.MustCompile(`var='registeredusersnum'[^>]*><value>3</value>`).MatchString(got) {
		t.Errorf("get-registered-users-num: %s", got)
	}
	if got := run(t, boss, admin.NodeUsersList, ""); !strings.Contains(got, "<value>alice@localhost</value><value>boss@localhost</value><value>carol@localhost</value>") {
		t.Errorf("get-registered-users-list: %s", got)
	}
	if got := run(t, boss, admin.NodeOnlineNum, ""); !regexp.MustCompile(`var='onlineusersnum'[^>]*><value>3</value>`).MatchString(got) {
		t.Errorf("get-online-users-num: %s", got)
	}
	if got := run(t, boss, admin.NodeOnlineList, ""); !strings.Contains(got, "var='onlineuserjids' type='jid-multi'") ||
		!strings.Contains(got, "<value>alice@localhost</value><value>boss@localhost</value><value>carol@localhost</value></field>") {
		t.Errorf("get-online-users-list: %s", got)
	}

	if got := run(t, boss, admin.NodeAnnounce, field("subject", "Maintenance")+field("announcement", "Down at 22:00", "for ten minutes")); !strings.Contains(got, "sent to") {
		t.Errorf("announce: %s", got)
	}
	// The line break is written as a character reference (treff.AppendEscaped
	// writes one for tab, newline and carriage return, so that the text
	// also survives in attribute values).
	alice.Expect(`<message type='headline' from='localhost' to='alice@localhost/r'><subject>Maintenance</subject><body>Down at 22:00&#xA;for ten minutes</body></message>`)

	if got := run(t, boss, admin.NodeDeleteUser, field("accountjids", "carol@localhost", "nobody@localhost")); !strings.Contains(got, "Deleted: carol@localhost. No such account: nobody@localhost.") {
		t.Errorf("delete-user: %s", got)
	}

	// The registration policy, with the current one in the form.
	boss.Send("<iq type='set' id='p1' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='urn:treff:admin#registration'/></iq>")
	form := boss.Expect(`<iq type='result' id='p1'.*?</iq>`)
	if !strings.Contains(form, "<option><value>invite</value></option><value>closed</value>") {
		t.Errorf("registration form: %s", form)
	}
	if got := run(t, boss, admin.NodeRegistration, field("policy", "open")); !strings.Contains(got, "Registration is now open.") || reg.CurrentPolicy() != register.Open {
		t.Errorf("registration: %s (%s)", got, reg.CurrentPolicy())
	}

	// An invitation, for the admin (users may not).
	got = run(t, boss, admin.NodeInvite, "")
	m := regexp.MustCompile(`<value>(xmpp:localhost\?register;preauth=[A-Z2-7]+)</value>`).FindStringSubmatch(got)
	if m == nil || !strings.Contains(got, "var='expire'") {
		t.Fatalf("invite: %s", got)
	}
	if token := strings.TrimPrefix(m[1], "xmpp:localhost?register;preauth="); !strings.Contains(got, "var='landing-url'") || !strings.Contains(got, "<value>https://localhost/invite/"+token+"</value>") {
		t.Errorf("invite without its landing-url: %s", got)
	}
	if got := run(t, alice, admin.NodeInvite, ""); !strings.Contains(got, "<forbidden") {
		t.Errorf("alice made an invitation: %s", got)
	}
	invs, _ := reg.Invites.ListInvites(context.Background())
	if len(invs) != 1 || invs[0].Creator != "boss@localhost" || time.Until(invs[0].Expires) < 6*24*time.Hour {
		t.Errorf("invitations: %+v", invs)
	}
}

// The ad-hoc protocol itself: cancel, a wrong session, another user's
// session, an unknown node.
func TestAdHocSessions(t *testing.T) {
	ts, _ := newServer(t, true)
	boss := ts.Login(t, "boss", "boss-secret", "r")
	alice := ts.Login(t, "alice", "alice-secret", "r")
	exec := "<iq type='set' id='e' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + admin.NodeAddUser + "' action='execute'/></iq>"
	boss.Send(exec)
	id := sessionRe.FindStringSubmatch(boss.Expect(`<iq type='result' id='e'.*?</iq>`))[1]
	boss.Send("<iq type='set' id='c' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + admin.NodeAddUser + "' sessionid='" + id + "' action='cancel'/></iq>")
	boss.Expect(`<iq type='result' id='c'[^>]*><command xmlns='http://jabber.org/protocol/commands' node='` + regexp.QuoteMeta(admin.NodeAddUser) + `' sessionid='` + id + `' status='canceled'></command></iq>`)
	boss.Send("<iq type='set' id='c2' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + admin.NodeAddUser + "' sessionid='" + id + "' action='complete'/></iq>")
	boss.Expect(`<iq type='error' id='c2'.*?<bad-request.*?bad-sessionid`)
	boss.Send("<iq type='set' id='u' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='urn:example:nothing'/></iq>")
	boss.Expect(`<iq type='error' id='u'.*?<item-not-found`)
	// Users may invite here: alice gets a link.
	if got := run(t, alice, admin.NodeInvite, ""); !strings.Contains(got, "preauth=") {
		t.Errorf("alice's invitation: %s", got)
	}
}
