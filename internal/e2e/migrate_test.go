package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/treff-im/treff/internal/certs"
	"github.com/treff-im/treff/trefftest"
)

// The migration tests (XEP-0227, package pie, community import and
// export): accounts are filled by slixmpp (clients/migrate.py populate)
// on Prosody 0.12, ejabberd 23.01 or Treff itself, exported with the
// source's own tool, imported into an empty Treff with the example
// binary, and checked by the same clients logging in with their old
// passwords (clients/migrate.py check). Prosody and ejabberd run on
// loopback addresses of their own (migAddr), port 5222, as their own
// users, in a temporary folder.

var migAddr = map[string]string{
	"prosody":  "127.0.3.1",
	"ejabberd": "127.0.3.2",
}

const (
	migBody = "Alice Liddell"
)

// migUsers are the local parts and passwords of the test accounts (the
// passwords with non-ASCII letters and spaces: SASLprep matters).
var migUsers = [][2]string{{"alice", "alice pässwörd 1"}, {"bob", "bob-Paßwort-2"}, {"carol", "carol pw 3"}, {"erin", "erin pw 4"}}

// needMigration checks what a test against a reference server needs.
func needMigration(t *testing.T, progs ...string) {
	t.Helper()
	needSlixmpp(t)
	for _, prog := range append(progs, "runuser") {
		if _, err := exec.LookPath(prog); err != nil {
			fedSkip(t, "migration test: %s not found", prog)
		}
	}
	if os.Geteuid() != 0 {
		fedSkip(t, "migration test: needs root to run the reference servers as their own users")
	}
	for _, u := range []string{"prosody", "ejabberd"} {
		if slices.Contains(progs, u+"ctl") {
			if _, err := user.Lookup(u); err != nil {
				fedSkip(t, "migration test: no user %s: %v", u, err)
			}
		}
	}
}

// migDir makes a folder the reference servers' users can read, with a
// certificate for domain (cert.pem, key.pem).
func migDir(t *testing.T, domain string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "treff-migrate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.LoadOrCreate(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), domain); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// migClient runs clients/migrate.py scenario against addr for the users
// of domain (alice, with bob as peer and carol as third; erin is the
// account that gets a message while it never logged in, with
// --offline-to).
func migClient(t *testing.T, addr, cert, domain, scenario string, extra ...string) events {
	t.Helper()
	s := &server{Server: &trefftest.Server{Domain: domain, Addr: addr, CertFile: cert}}
	jid := func(i int) string { return migUsers[i][0] + "@" + domain }
	args := []string{"--jid", jid(0), "--password", migUsers[0][1], "--peer", jid(1), "--peer-password", migUsers[1][1],
		"--third", jid(2), "--third-password", migUsers[2][1], "--body", migBody}
	return s.client(t, "migrate.py", scenario, append(args, extra...)...)
}

// checkMigrated checks the events of the check scenario: both logged in
// with their old passwords, alice's roster (bob named and grouped, both
// ways subscribed; carol's pending request not in it), bob's, her vCard,
// her private element and carol's request delivered again.
func checkMigrated(t *testing.T, es events, domain string) {
	t.Helper()
	alice, bob, carol := "alice@"+domain, "bob@"+domain, "carol@"+domain
	for _, c := range []string{"alice", "bob"} {
		if l := es.one(t, "login", c); !strings.HasPrefix(l.JID, c+"@"+domain+"/") {
			t.Errorf("%s logged in as %q", c, l.JID)
		}
	}
	type item struct {
		JID, Name, Subscription, Ask string
		Groups                       []string
	}
	var st struct{ Roster []item }
	es.one(t, "state", "alice").decode(t, &st)
	want := []item{{JID: bob, Name: "Bobby", Subscription: "both", Groups: []string{"Friends"}}}
	if fmt.Sprint(st.Roster) != fmt.Sprint(want) {
		t.Errorf("alice's roster %+v, want %+v (carol's pending request is not an item)", st.Roster, want)
	}
	es.one(t, "state", "bob").decode(t, &st)
	if len(st.Roster) != 1 || st.Roster[0].JID != alice || st.Roster[0].Subscription != "both" {
		t.Errorf("bob's roster %+v, want alice with subscription both", st.Roster)
	}
	var v struct{ FN string }
	es.one(t, "vcard", "alice").decode(t, &v)
	if v.FN != migBody {
		t.Errorf("alice's vCard FN %q, want %q", v.FN, migBody)
	}
	var p struct{ Nick string }
	es.one(t, "private", "alice").decode(t, &p)
	if p.Nick != "rabbit & co" {
		t.Errorf("alice's private element: nick %q", p.Nick)
	}
	if pe := es.one(t, "pending", "alice"); pe.From != carol {
		t.Errorf("pending request from %q, want %q", pe.From, carol)
	}
}

// checkPEP checks the nickname alice published with PEP before the move.
func checkPEP(t *testing.T, es events) {
	t.Helper()
	var pep struct{ Nicks []string }
	es.one(t, "pep", "alice").decode(t, &pep)
	if !slices.Equal(pep.Nicks, []string{"Alice"}) {
		t.Errorf("alice's PEP nickname items %q, want [Alice]", pep.Nicks)
	}
}

// offlineArgs are the options of migClient for erin's offline message.
func offlineArgs(domain string) []string {
	return []string{"--offline-to", migUsers[3][0] + "@" + domain, "--offline-password", migUsers[3][1]}
}

// checkOffline checks that erin got bob's message, stored before the
// move, with a <delay/>.
func checkOffline(t *testing.T, es events, domain string) {
	t.Helper()
	var m struct{ Body, From string }
	es.one(t, "offline", "erin").decode(t, &m)
	if m.Body != "while you were away" || !strings.HasPrefix(m.From, "bob@"+domain) {
		t.Errorf("erin's offline message: %+v", m)
	}
	if len(es.of("delay", "erin")) != 1 {
		t.Errorf("erin's offline message came without a single <delay/>: %v", es.of("delay", "erin"))
	}
}

// importSummary checks a line of the summary community import prints.
func importSummary(t *testing.T, out, what string, imported, skipped int) {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(what) + `: +(\d+) imported, (\d+) skipped`)
	m := re.FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(imported) || m[2] != strconv.Itoa(skipped) {
		t.Errorf("import summary: %s: want %d imported, %d skipped; got\n%s", what, imported, skipped, out)
	}
}

// TestMigrateFromProsody: accounts filled on Prosody 0.12, exported with
// prosody-migrator to its xep0227 store (one file per user, SCRAM-SHA-1
// credentials), imported with community import FOLDER into an empty
// data folder with no server running, checked on Treff; a second import
// skips everything.
func TestMigrateFromProsody(t *testing.T) {
	needMigration(t, "prosody", "prosodyctl", "prosody-migrator", "lua5.4")
	const domain = "prosody.migrate.test"
	dir := migDir(t, domain)
	ip := migAddr["prosody"]
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	writeFile(t, cfg, fmt.Sprintf(`-- Prosody for TestMigrateFromProsody
pidfile = %[1]q
data_path = %[2]q
log = { debug = %[3]q }
daemonize = false
interfaces = { %[4]q }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
use_ipv6 = false
c2s_require_encryption = true
ssl = { certificate = %[5]q; key = %[6]q; }
authentication = "internal_hashed"
storage = "internal"
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "vcard"; "private"; "pep"; "offline"; "posix" }
VirtualHost %[7]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "prosody.log"), ip,
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), domain))
	for _, sub := range []string{"data", "export"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	chownR(t, dir, "prosody")
	for _, u := range migUsers {
		runAs(t, "prosody", dir, nil, "prosodyctl", "--config", cfg, "register", u[0], domain, u[1])
	}
	pr := startRef(t, "prosody", dir, []string{filepath.Join(dir, "prosody.log")}, []string{ip + ":5222"},
		"-u", "prosody", "--", "prosody", "-F", "--config", cfg)
	migClient(t, ip+":5222", filepath.Join(dir, "cert.pem"), domain, "populate", "--pep")
	pr.stop()

	// prosody-migrator writes its xep0227 store's files into its data
	// path, which is fixed in the script (CFG_DATADIR, /var/lib/prosody
	// in Debian's build): a copy of the script with the export folder
	// there instead.
	script, err := os.ReadFile("/usr/bin/prosody-migrator")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^CFG_DATADIR=.*$`)
	if !re.Match(script) {
		t.Fatal("prosody-migrator has no CFG_DATADIR line")
	}
	export := filepath.Join(dir, "export")
	writeFile(t, filepath.Join(dir, "migrator.lua"), re.ReplaceAllLiteralString(string(script), fmt.Sprintf("CFG_DATADIR=%q;", export)))
	stores := `{ "accounts", "roster", "vcard", "private", "pep-pubsub" }`
	writeFile(t, filepath.Join(dir, "migrator.cfg.lua"), fmt.Sprintf(`input { type = "internal"; path = %q; hosts = { [%q] = %s } }
output { type = "xep0227"; path = %q; hosts = { [%q] = %s } }
`, filepath.Join(dir, "data"), domain, stores, export, domain, stores))
	chownR(t, dir, "prosody")
	runAs(t, "prosody", dir, nil, "lua5.4", filepath.Join(dir, "migrator.lua"), "--config="+filepath.Join(dir, "migrator.cfg.lua"), "input", "output")
	files, _ := filepath.Glob(filepath.Join(export, "*.xml"))
	if len(files) != len(migUsers) {
		t.Fatalf("prosody-migrator wrote %q, want one file per user", files)
	}
	b, _ := os.ReadFile(filepath.Join(export, "alice@"+domain+".xml"))
	t.Logf("Prosody's export of alice:\n%s", b)
	if !strings.Contains(string(b), "mechanism='SCRAM-SHA-1'") || strings.Contains(string(b), migUsers[0][1]) {
		t.Errorf("Prosody's export of alice:\n%s", b)
	}

	bin := withFlags(t, buildCommunity(t), "-domain", domain)
	data := t.TempDir()
	out := runCommunity(t, bin, "import", "-data", data, export)
	importSummary(t, out, "accounts", 4, 0)
	importSummary(t, out, "roster contacts", 4, 0) // bob, carol (pending), alice; alice in carol's
	importSummary(t, out, "vCards", 1, 0)
	importSummary(t, out, "private XML", 1, 0)
	if !strings.Contains(out, "note: 4 accounts came with SCRAM-SHA-1 keys only") {
		t.Errorf("the summary does not say that the accounts have SCRAM-SHA-1 keys only:\n%s", out)
	}
	out = runCommunity(t, bin, "import", "-data", data, export)
	importSummary(t, out, "accounts", 0, 4)
	importSummary(t, out, "roster contacts", 0, 4)

	p := startCommunity(t, bin, data)
	// Prosody 0.12 kept SCRAM-SHA-1 credentials only.
	es := migClient(t, p.addr, p.cert, domain, "check", "--mech", "SCRAM-SHA-1", "--pep")
	checkMigrated(t, es, domain)
	checkPEP(t, es)
	p.stop(t)
}

// TestMigrateFromEjabberd: accounts filled on ejabberd 23.01 (passwords
// kept as SCRAM-SHA-256 on one host, in clear on another), exported with ejabberdctl export_piefxis (a
// main file including one file per host), imported with community import
// FOLDER through the admin socket of a running Treff, checked there.
func TestMigrateFromEjabberd(t *testing.T) {
	needMigration(t, "ejabberdctl")
	// plainDomain's passwords are kept in clear (ejabberd's
	// auth_password_format: plain), and exported so.
	const domain, plainDomain = "ejabberd.migrate.test", "plain.ejabberd.migrate.test"
	const dora, doraPW = "dora@" + plainDomain, "dora's pässwörd"
	dir := migDir(t, domain)
	ip := migAddr["ejabberd"]
	distPort := freePort(t)
	writeFile(t, filepath.Join(dir, "ejabberd.yml"), fmt.Sprintf(`# ejabberd for TestMigrateFromEjabberd
loglevel: info
log_rotate_count: 0
hosts:
  - %[1]q
  - %[5]q
host_config:
  %[5]q:
    auth_password_format: plain
certfiles:
  - %[2]q
  - %[3]q
listen:
  -
    port: 5222
    ip: %[4]q
    module: ejabberd_c2s
    starttls_required: true
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper_rules:
  c2s_shaper: none
modules:
  mod_disco: {}
  mod_offline: {}
  mod_private: {}
  mod_roster: {}
  mod_vcard: {}
`, domain, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), ip, plainDomain))
	writeFile(t, filepath.Join(dir, "ejabberdctl.cfg"), fmt.Sprintf(`ERLANG_NODE=treff-migrate-ejabberd@localhost
INET_DIST_INTERFACE=127.0.0.1
ERL_DIST_PORT=%d
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_CONFIG_PATH=%s
EJABBERD_PID_PATH=%s
EJABBERD_BYPASS_WARNINGS=true
`, distPort, filepath.Join(dir, "ejabberd.yml"), filepath.Join(dir, "ejabberd.pid")))
	writeFile(t, filepath.Join(dir, "inetrc"), "{lookup, [file]}.\n")
	for _, sub := range []string{"db", "log", "export"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	chownR(t, dir, "ejabberd")
	ctl := []string{"ejabberdctl", "--config-dir", dir, "--spool", filepath.Join(dir, "db"), "--logs", filepath.Join(dir, "log")}
	home := []string{"HOME=" + dir} // the Erlang cookie the node and ejabberdctl share
	startRef(t, "ejabberd", dir, []string{filepath.Join(dir, "log", "ejabberd.log")}, []string{ip + ":5222"},
		append([]string{"-u", "ejabberd", "--", "env", "HOME=" + dir}, append(slices.Clone(ctl), "foreground")...)...)
	for _, u := range migUsers {
		runAs(t, "ejabberd", dir, home, append(slices.Clone(ctl), "register", u[0], domain, u[1])...)
	}
	runAs(t, "ejabberd", dir, home, append(slices.Clone(ctl), "register", "dora", plainDomain, doraPW)...)
	migClient(t, ip+":5222", filepath.Join(dir, "cert.pem"), domain, "populate", offlineArgs(domain)...)
	export := filepath.Join(dir, "export")
	runAs(t, "ejabberd", dir, home, append(slices.Clone(ctl), "export_piefxis", export)...)
	files, _ := filepath.Glob(filepath.Join(export, "*.xml"))
	if len(files) != 3 {
		t.Fatalf("export_piefxis wrote %q, want a main file and one for each host", files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		t.Logf("ejabberd's %s:\n%s", filepath.Base(f), b)
	}

	bin := withFlags(t, buildCommunity(t), "-domain", domain+","+plainDomain)
	data := t.TempDir()
	p := startCommunity(t, bin, data)
	out := runCommunity(t, bin, "import", "-data", data, export)
	importSummary(t, out, "accounts", 5, 0)
	importSummary(t, out, "vCards", 1, 0)
	importSummary(t, out, "private XML", 1, 0)
	importSummary(t, out, "offline msgs", 1, 0)
	es := migClient(t, p.addr, p.cert, domain, "check", offlineArgs(domain)...)
	checkMigrated(t, es, domain)
	checkOffline(t, es, domain)
	// dora's password came in clear and was hashed on import.
	es = p.clients().slix(t, "disco", "--jid", dora, "--password", doraPW, "--mech", "SCRAM-SHA-256")
	if l := es.one(t, "login", "alice"); !strings.HasPrefix(l.JID, dora+"/") || l.Mech != "SCRAM-SHA-256" {
		t.Errorf("dora's login: %+v", l)
	}
	p.stop(t)
}

// TestMigrateTreffRoundTrip: accounts filled on Treff (and a persistent
// room), exported with community export while it runs, imported with
// community import FILE into an empty data folder, checked on a Treff
// started there.
func TestMigrateTreffRoundTrip(t *testing.T) {
	needSlixmpp(t)
	const domain = "localhost"
	bin := buildCommunity(t)
	src := t.TempDir()
	for _, u := range migUsers {
		runCommunity(t, bin, "adduser", "-data", src, "-password", u[1], u[0]+"@"+domain)
	}
	p := startCommunity(t, bin, src)
	migClient(t, p.addr, p.cert, domain, "populate", append(offlineArgs(domain), "--pep")...)
	// A persistent room alice owns (XEP-0045), with a name that needs
	// escaping.
	const room, roomName = "keep@" + mucService, "Käffchen & Co's <room>"
	roomArgs := []string{"--jid", "alice@" + domain, "--password", migUsers[0][1], "--peer", "bob@" + domain,
		"--peer-password", migUsers[1][1], "--third", "carol@" + domain, "--third-password", migUsers[2][1],
		"--room", "keep", "--room-name", roomName}
	es := p.clients().muc(t, "persist_create", roomArgs...)
	checkJoined(t, es, "alice", room, "alice", 110, 201)
	file := filepath.Join(t.TempDir(), "treff.xml")
	runCommunity(t, bin, "export", "-data", src, file)
	p.stop(t)

	dst := t.TempDir()
	out := runCommunity(t, bin, "import", "-data", dst, file)
	importSummary(t, out, "accounts", 4, 0)
	importSummary(t, out, "vCards", 1, 0)
	importSummary(t, out, "offline msgs", 1, 0)
	importSummary(t, out, "rooms", 1, 0)
	p = startCommunity(t, bin, dst)
	es = migClient(t, p.addr, p.cert, domain, "check", append(offlineArgs(domain), "--pep")...)
	checkMigrated(t, es, domain)
	checkOffline(t, es, domain)
	checkPEP(t, es)
	// The room is there, persistent with its name, and alice gets back in
	// as its owner (not created anew: no 201).
	es = p.clients().muc(t, "persist_check", roomArgs...)
	checkRoomInfo(t, discoInfo(t, es, "bob"), roomName, "muc_persistent", "muc_public")
	checkJoined(t, es, "alice", room, "alice", 110)
	for _, pr := range mucPresences(t, es, "alice") {
		if pr.From == room+"/alice" && pr.Type == "" && (pr.Item == nil || pr.Item.Affiliation != "owner") {
			t.Errorf("alice's self-presence in the imported room has item %+v, want owner", pr.Item)
		}
	}
	p.stop(t)
}
