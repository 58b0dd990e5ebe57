package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/register"
)

func TestParseConfigEmptyIsDefault(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only a comment\n  # indented comment\n\t\n"} {
		c, err := ParseConfig("x.conf", strings.NewReader(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("%q: got %+v, want the defaults %+v", in, c, Default())
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	if !reflect.DeepEqual(c.Domains, []string{"localhost"}) || c.Data != "treff-data" ||
		c.C2S != "127.0.0.1:5222" || c.C2STLS != "127.0.0.1:5223" || c.Cert != "" || c.Key != "" ||
		c.LogLevel != slog.LevelInfo || c.MOTD != "" || !c.Push || c.PushBody {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

// The sample sets every key, each to its default.
func TestSampleIsCompleteAndDefault(t *testing.T) {
	b, err := os.ReadFile("treff.conf.sample")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig("treff.conf.sample", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("sample gives %+v, want the defaults %+v", c, Default())
	}
	for _, o := range options {
		if !strings.Contains(string(b), "\n"+o.key+" =") {
			t.Errorf("sample does not set %s", o.key)
		}
	}
}

func TestParseConfig(t *testing.T) {
	in := `
# a comment
domain = Example.ORG, chat.example.net
data = /var/lib/treff   
  c2s = [::1]:5222
c2s_tls =
http = [::1]:8080
https = :443
http_origins = https://a.example, *
websocket_see_other_uri = wss://chat.example.org/xmpp-websocket
bosh_sessions_per_address = 3
status_template = /etc/treff/status.tmpl
web_client = /srv/converse
http_url = https://chat.example.org/
upload = no
upload_max_size = 512K
upload_quota = 2G
upload_expire = 7d
contact_abuse = xmpp:abuse@example.org, mailto:abuse@example.org
contact_security = https://example.org/security
stun = stun.example.org:3478, [2001:db8::3]:3478
turn = turn.example.org:3478
turn_secret = s3cret
turn_ttl = 2h
push = no
push_body = yes
s2s = [::1]:5269
s2s_tls = [::1]:5270
s2s_ca = /etc/ssl/a.pem, /etc/ssl/b.pem
s2s_resolve = example.net=192.0.2.7:5269, chat.example.com=[2001:db8::1]:5269
s2s_self_signed = yes
s2s_dialback = no
s2s_idle_timeout = 2m
component_listen = 127.0.0.1:5348
component = IRC.example.org=s3cret=x, bot.example.org = other
cert = /etc/tls/fullchain.pem
key=/etc/tls/privkey.pem
acme = yes
acme_directory = https://acme-staging-v02.api.letsencrypt.org/directory
acme_email = ops@example.org
log_level = DEBUG
max_stanza_size = 100000
max_attributes = 200
idle_timeout = 0
resume_timeout = 90s
negotiation_timeout = 1m30s
write_timeout = 5s
max_queue = 4096
max_auth_failures = 5
motd = "  Welcome # not a comment\n"
offline_limit = 50
ping_interval = 0
hide_version = YES
new_account_age = 2d
limit_strangers = 10/30m
limit_messages = none
limit_joins = 20/1m
limit_room_creations = 1/24h
limit_uploads = 5 / 1h
limit_pre_auth = 10/1m
filter_strangers = Quarantine
gc_percent = 50
debug_addr = 127.0.0.1:6060
metrics = 127.0.0.1:9155
proxy_protocol = c2s, https, c2s
proxy_protocol_trusted = 10.0.0.5, 192.0.2.0/24, ::ffff:198.51.100.1
proxy_protocol_timeout = 2s
proxy_protocol_max_header = 4096
drain_see_other_host = [2001:db8::1]:5222
drain_ack_wait = 0s
registration = Open
registration_min_password = 12
registration_per_address = 1/10m
registration_global = 100 / 24h
auth_limit = 5/10m
rtbl = xmppbl.org/muc_bans_sha256, pubsub.example.net/spam
notify_registrations = no
report_forward = reports@xmppbl.example
auth_limit_account = 30/1h
expire_after = 180d
registration_hold_deleted = 7d
admins = Boss@Example.org, ops@chat.example.net
invites_by_users = yes
invite_validity = 48h
muc = no
muc_creators = boss@example.org
pubsub = no
pubsub_creators = boss@example.org, ops@chat.example.net
muc_max_occupants = 50
muc_max_history = 5
muc_max_retractable = 300
muc_max_vcard = 65536
muc_keep_temporary = 2h
expire_daily = yes
backup_daily = /var/backups/treff
backup_keep = 14
backup_recipient = age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p , age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg
archive = yes
store = postgres
pg_dsn = postgres://treff@/treff?host=/run/postgresql&pool_max_conns=8
archive_retention = 30d
fast_expiry = 14d
fast_rotate = 12h
`
	c, err := ParseConfig("x.conf", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Domains:                []string{"example.org", "chat.example.net"},
		Data:                   "/var/lib/treff",
		C2S:                    "[::1]:5222",
		C2STLS:                 "",
		HTTP:                   "[::1]:8080",
		HTTPS:                  ":443",
		HTTPOrigins:            []string{"https://a.example", "*"},
		WebSocketSeeOther:      "wss://chat.example.org/xmpp-websocket",
		BOSHSessionsPerAddress: 3,
		StatusTemplate:         "/etc/treff/status.tmpl",
		WebClient:              "/srv/converse",
		HTTPURL:                "https://chat.example.org/",
		Upload:                 false,
		UploadMaxSize:          512 << 10,
		UploadQuota:            2 << 30,
		UploadExpire:           7 * 24 * time.Hour,
		ContactAbuse:           []string{"xmpp:abuse@example.org", "mailto:abuse@example.org"},
		ContactSecurity:        []string{"https://example.org/security"},
		STUN:                   []string{"stun.example.org:3478", "[2001:db8::3]:3478"},
		TURN:                   []string{"turn.example.org:3478"},
		TURNSecret:             "s3cret",
		TURNTTL:                2 * time.Hour,
		PushBody:               true,
		S2S:                    "[::1]:5269",
		S2STLS:                 "[::1]:5270",
		S2SCA:                  []string{"/etc/ssl/a.pem", "/etc/ssl/b.pem"},
		S2SResolve:             map[string]string{"example.net": "192.0.2.7:5269", "chat.example.com": "[2001:db8::1]:5269"},
		S2SSelfSigned:          true,
		S2SDialback:            false,
		S2SIdleTimeout:         2 * time.Minute,
		ComponentListen:        "127.0.0.1:5348",
		Components:             map[string]string{"irc.example.org": "s3cret=x", "bot.example.org": "other"},
		Cert:                   "/etc/tls/fullchain.pem",
		Key:                    "/etc/tls/privkey.pem",
		ACME:                   true,
		ACMEDirectory:          "https://acme-staging-v02.api.letsencrypt.org/directory",
		ACMEEmail:              "ops@example.org",
		LogLevel:               slog.LevelDebug,
		MaxStanzaSize:          100000,
		MaxAttributes:          200,
		IdleTimeout:            0,
		ResumeTimeout:          90 * time.Second,
		NegotiationTimeout:     90 * time.Second,
		WriteTimeout:           5 * time.Second,
		MaxQueue:               4096,
		MaxAuthFailures:        5,
		MOTD:                   "  Welcome # not a comment\n",
		OfflineLimit:           50,
		PingInterval:           0,
		HideVersion:            true,
		NewAccountAge:          48 * time.Hour,
		LimitStrangers:         ratelimit.Limit{N: 10, Period: 30 * time.Minute},
		LimitMessages:          ratelimit.Limit{},
		LimitJoins:             ratelimit.Limit{N: 20, Period: time.Minute},
		LimitRoomCreations:     ratelimit.Limit{N: 1, Period: 24 * time.Hour},
		LimitUploads:           ratelimit.Limit{N: 5, Period: time.Hour},
		LimitPreAuth:           ratelimit.Limit{N: 10, Period: time.Minute},
		FilterStrangers:        antispam.Quarantine,
		GCPercent:              50,
		DebugAddr:              "127.0.0.1:6060",
		Metrics:                "127.0.0.1:9155",
		ProxyProtocol:          []string{"c2s", "https"},
		ProxyTrusted:           []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.1/32")},
		ProxyTimeout:           2 * time.Second,
		ProxyMaxHeader:         4096,
		DrainSeeOtherHost:      "[2001:db8::1]:5222",

		Registration:            register.Open,
		RegistrationMinPassword: 12,
		RegistrationPerAddress:  register.Limit{N: 1, Period: 10 * time.Minute},
		RegistrationGlobal:      register.Limit{N: 100, Period: 24 * time.Hour},
		AuthLimit:               register.Limit{N: 5, Period: 10 * time.Minute},
		AuthLimitAccount:        register.Limit{N: 30, Period: time.Hour},
		RTBL:                    []string{"xmppbl.org/muc_bans_sha256", "pubsub.example.net/spam"},
		NotifyRegistrations:     false,
		ReportForward:           "reports@xmppbl.example",
		ExpireAfter:             180 * 24 * time.Hour,
		RegistrationHoldDeleted: 7 * 24 * time.Hour,
		Admins:                  []string{"boss@example.org", "ops@chat.example.net"},
		InvitesByUsers:          true,
		InviteValidity:          48 * time.Hour,
		MUC:                     false,
		ClusterRoomQueue:        4096,
		ClusterDirectedPresence: 64,
		MUCSaveHistory:          10 * time.Second,
		MUCCreators:             []string{"boss@example.org"},
		MUCMaxOccupants:         50,
		MUCMaxHistory:           5,
		MUCMaxQueue:             4 << 20,
		MUCMaxRetractable:       300,
		MUCMaxVCard:             64 << 10,
		PubSub:                  false,
		PubSubCreators:          []string{"boss@example.org", "ops@chat.example.net"},
		MUCKeepTemporary:        2 * time.Hour,
		ExpireDaily:             true,
		BackupDaily:             "/var/backups/treff",
		BackupKeep:              14,
		BackupRecipients:        []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"},
		Archive:                 true,
		ArchiveRetention:        30 * 24 * time.Hour,
		FASTExpiry:              14 * 24 * time.Hour,
		FASTRotate:              12 * time.Hour,
		ArchiveMaxQueue:         8 << 20,
		Store:                   "postgres",
		ClusterHeartbeat:        time.Second,
		ClusterDeadAfter:        4 * time.Second,
		KeepInFlight:            "auto",
		PGDSN:                   "postgres://treff@/treff?host=/run/postgresql&pool_max_conns=8",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"domain = localhost\nfoo = bar\n", `x.conf:2: unknown key "foo"`},
		{"\n\njust some words\n", `x.conf:3: expected key = value`},
		{"# c\ndomain = a\ndomain = b\n", `x.conf:3: domain is already set on line 2`},
		{"domain =\n", `x.conf:1: domain: at least one domain`},
		{"domain = a@b\n", `x.conf:1: domain: "a@b" is not a domain`},
		{"domain = a, A\n", `x.conf:1: domain: domain "A" listed twice`},
		{"data =\n", `x.conf:1: data: must not be empty`},
		{"backup_keep = 0\n", `x.conf:1: backup_keep: 0 is less than 1`},
		{"store = mysql\n", `x.conf:1: store: "mysql" is not bbolt or postgres`},
		{"backup_recipient = age1nope\n", `x.conf:1: backup_recipient: "age1nope" is not an age public key`},
		{"c2s = 5222\n", `x.conf:1: c2s: "5222" is not a host:port address`},
		{"\nlog_level = verbose\n", `x.conf:2: log_level: "verbose" is not one of`},
		{"max_stanza_size = 1k\n", `x.conf:1: max_stanza_size: "1k" is not an integer`},
		{"max_stanza_size = 9999\n", `x.conf:1: max_stanza_size: 9999 is less than 10000`},
		{"max_attributes = 15\n", `x.conf:1: max_attributes: 15 is less than 16`},
		{"idle_timeout = 5\n", `x.conf:1: idle_timeout: "5" is not a duration`},
		{"http = :80\n", `x.conf:1: http: ":80": plain HTTP is only for loopback addresses; use https`},
		{"s2s_resolve = example.net\n", `x.conf:1: s2s_resolve: "example.net" is not domain=host:port`},
		{"component = irc.example.org\n", `x.conf:1: component: "irc.example.org" is not DOMAIN=SECRET`},
		{"component = irc.example.org=\n", `x.conf:1: component: "irc.example.org=" is not DOMAIN=SECRET`},
		{"component = a.example=x, A.example=y\n", `x.conf:1: component: component a.example listed twice`},
		{"idle_timeout = -1s\n", `x.conf:1: idle_timeout: -1s must be positive`},
		{"negotiation_timeout = 0\n", `x.conf:1: negotiation_timeout: 0 must be positive`},
		{"max_auth_failures = 0\n", `x.conf:1: max_auth_failures: 0 is less than 1`},
		{"motd = \"unterminated\n", `x.conf:1: motd: bad quoted string`},
		{"debug_addr = :6060\n", `x.conf:1: debug_addr: ":6060" is not a loopback address`},
		{"gc_percent = 0\n", `x.conf:1: gc_percent:`},
		{"metrics = 9155\n", `x.conf:1: metrics: "9155" is not host:port, yes or no`},
		{"proxy_protocol = s2s\n", `x.conf:1: proxy_protocol: "s2s" is not one of`},
		{"proxy_protocol_trusted = 10.0.0.0/33\n", `x.conf:1: proxy_protocol_trusted: "10.0.0.0/33" is not an address or prefix`},
		{"drain_see_other_host = a b\n", `x.conf:1: drain_see_other_host:`},
		{"admins = boss\n", `x.conf:1: admins: "boss" is not a user's bare JID`},
		{"expire_after = 0d\n", `x.conf:1: expire_after: "0d" is not a number of days`},
		{"registration = invite-only\n", `x.conf:1: registration: "invite-only" is not open, closed or invite`},
		{"registration_per_address = 3\n", `x.conf:1: registration_per_address: "3" is not COUNT/DURATION`},
		{"registration_global = 3/0s\n", `x.conf:1: registration_global: 0s must be positive`},
		{"limit_strangers = 30\n", `x.conf:1: limit_strangers: "30" is not COUNT/DURATION (like 30/1h) or none`},
		{"limit_messages = 0/1m\n", `x.conf:1: limit_messages: "0/1m" is not COUNT/DURATION`},
		{"filter_strangers = maybe\n", `x.conf:1: filter_strangers: "maybe" is not no, drop or quarantine`},
		{"new_account_age = 0d\n", `x.conf:1: new_account_age:`},
		{"bosh_sessions_per_address = -1\n", `x.conf:1: bosh_sessions_per_address: -1 is less than 0`},
		{"contact_abuse = abuse@example.org\n", `x.conf:1: contact_abuse: "abuse@example.org": not an xmpp:, mailto:, https:, http: or tel: URI`},
		{"turn = turn.example.org\n", `x.conf:1: turn: "turn.example.org" is not host:port`},
		{"stun = stun.example.org:0\n", `x.conf:1: stun: "stun.example.org:0": bad port`},
		{"turn_ttl = 0\n", `x.conf:1: turn_ttl: 0 must be positive`},
		{"acme = maybe\n", `x.conf:1: acme:`},
		{"acme_directory = http://ca.example/dir\n", `x.conf:1: acme_directory: "http://ca.example/dir" is not an https URL`},
		{"acme_email = ops\n", `x.conf:1: acme_email: "ops" is not an email address`},
		{"= value\n", `x.conf:1: unknown key ""`},
	} {
		_, err := ParseConfig("x.conf", strings.NewReader(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got error %v, want one starting with %q", tc.in, err, tc.want)
		}
	}
}

// Flags override the config file, which overrides the defaults.
func TestLoadConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "treff.conf")
	if err := os.WriteFile(file, []byte("domain = example.org\ndata = /srv/treff\nlog_level = warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(file, []setting{{"data", "/tmp/other"}, {"c2s_tls", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Domains, []string{"example.org"}) || c.LogLevel != slog.LevelWarn {
		t.Errorf("file settings lost: %+v", c)
	}
	if c.Data != "/tmp/other" || c.C2STLS != "" {
		t.Errorf("flags did not override: %+v", c)
	}
	if c.C2S != "127.0.0.1:5222" {
		t.Errorf("default lost: %+v", c)
	}

	if _, err := loadConfig(file, []setting{{"idle_timeout", "soon"}}); err == nil ||
		!strings.Contains(err.Error(), "flag -idle-timeout") {
		t.Errorf("bad flag: got %v", err)
	}
	if _, err := loadConfig(filepath.Join(t.TempDir(), "missing.conf"), nil); err == nil {
		t.Error("missing config file: no error")
	}
}

// Flags are parsed before and after the positional argument.
func TestFlagsAfterArguments(t *testing.T) {
	f := newFlags("test", new(strings.Builder), "data", "domain")
	var pw string
	f.fs.StringVar(&pw, "password", "", "")
	pos, err := f.parse([]string{"-data", "d1", "alice@localhost", "-password", "x y", "-domain", "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pos, []string{"alice@localhost"}) || pw != "x y" {
		t.Errorf("pos %q, password %q", pos, pw)
	}
	c, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "d1" || !reflect.DeepEqual(c.Domains, []string{"example.org"}) {
		t.Errorf("config %+v", c)
	}

	f = newFlags("test", new(strings.Builder), "data")
	pos, err = f.parse([]string{"--", "-data"})
	if err != nil || !reflect.DeepEqual(pos, []string{"-data"}) {
		t.Errorf("after --: %q, %v", pos, err)
	}
}

// TestCheckComponents: a component domain may not be a served domain or
// one of the services' of the configuration.
func TestCheckComponents(t *testing.T) {
	cfg := Default()
	for d, want := range map[string]string{
		"irc.localhost":        "",
		"localhost":            "component localhost: that is a served domain",
		"conference.localhost": "component conference.localhost: that is the group chat service",
		"upload.localhost":     "component upload.localhost: that is the upload service",
	} {
		cfg.Components = map[string]string{d: "secret"}
		err := checkComponents(cfg)
		if got := fmt.Sprint(err); want == "" && err != nil || want != "" && got != want {
			t.Errorf("%s: got %v, want %q", d, err, want)
		}
	}
}

// TestServeClusterNeedsSharedStore: cluster = yes with the bbolt store
// (each process its own file) is a usage error before anything is
// created.
func TestServeClusterNeedsSharedStore(t *testing.T) {
	cfg := Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	if err := cfg.Set("cluster", "yes"); err != nil {
		t.Fatal(err)
	}
	err := serve(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "needs a store that all nodes share") || errorKind(err) != kindUsage {
		t.Errorf("got %v, want a usage error about a shared store", err)
	}
	if _, err := os.Stat(cfg.Data); err == nil {
		t.Error("the data folder was created")
	}
}

// TestClusterKeys: the cluster keys parse and refuse bad values.
func TestClusterKeys(t *testing.T) {
	cfg := Default()
	for k, v := range map[string]string{"cluster_listen": "127.0.0.2:6222", "cluster_peers": "127.0.0.2:6222, 127.0.0.3:6222", "node_name": "node-1", "cluster_nats": "nats://127.0.0.1:4222", "cluster_secret_file": "/etc/treff/cluster-secret", "cluster_directed_presence": "10"} {
		if err := cfg.Set(k, v); err != nil {
			t.Errorf("%s = %s: %v", k, v, err)
		}
	}
	if cfg.ClusterListen != "127.0.0.2:6222" || len(cfg.ClusterPeers) != 2 || cfg.NodeName != "node-1" || cfg.ClusterNATS != "nats://127.0.0.1:4222" || cfg.ClusterSecretFile != "/etc/treff/cluster-secret" || cfg.ClusterDirectedPresence != 10 {
		t.Errorf("got %+v", cfg)
	}
	for k, v := range map[string]string{"cluster_listen": "nohost", "cluster_peers": "a:b", "node_name": "a.b", "cluster": "maybe", "cluster_directed_presence": "0"} {
		if err := cfg.Set(k, v); err == nil {
			t.Errorf("%s = %s accepted", k, v)
		}
	}
	if d := Default(); d.NodeName != "" || d.Cluster || d.ClusterTLSCert != "" || d.ClusterTLSKey != "" || d.ClusterTLSCA != "" {
		t.Error("defaults: want cluster no, node_name empty (the host name), no route TLS")
	}
}

// TestClusterTLSKeys: cluster_tls_cert, cluster_tls_key and
// cluster_tls_ca go together for the embedded routes (a usage error
// otherwise); with cluster_nats the CA alone will do.
func TestClusterTLSKeys(t *testing.T) {
	for _, c := range []struct {
		set  map[string]string
		want string // in the error; "" for none
	}{
		{map[string]string{"cluster_tls_cert": "c.pem"}, "cluster_tls_cert and cluster_tls_key go together"},
		{map[string]string{"cluster_tls_cert": "c.pem", "cluster_tls_key": "k.pem"}, "cluster_tls_cert needs cluster_tls_ca"},
		{map[string]string{"cluster_tls_ca": "ca.pem"}, "cluster_tls_ca needs cluster_tls_cert and cluster_tls_key"},
		{map[string]string{"cluster_tls_cert": "c.pem", "cluster_tls_key": "k.pem", "cluster_tls_ca": "ca.pem"}, ""},
		{map[string]string{"cluster_nats": "tls://127.0.0.1:4222", "cluster_tls_ca": "ca.pem"}, ""},
	} {
		cfg := Default()
		for k, v := range map[string]string{"cluster": "yes", "store": "postgres"} {
			if err := cfg.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range c.set {
			if err := cfg.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		if cfg.ClusterTLSCA != c.set["cluster_tls_ca"] || cfg.ClusterTLSCert != c.set["cluster_tls_cert"] || cfg.ClusterTLSKey != c.set["cluster_tls_key"] {
			t.Errorf("%v: got %q %q %q", c.set, cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA)
		}
		err := checkCluster(cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.set, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || errorKind(err) != kindUsage):
			t.Errorf("%v: got %v, want a usage error %q", c.set, err, c.want)
		}
	}
}

// TestServeClusterDeadAfter: cluster_dead_after not above
// cluster_heartbeat is a usage error before anything is opened.
func TestServeClusterDeadAfter(t *testing.T) {
	cfg := Default()
	cfg.Data = filepath.Join(t.TempDir(), "data")
	for k, v := range map[string]string{"cluster": "yes", "store": "postgres", "pg_dsn": "postgres://nobody@127.0.0.1:1/none", "cluster_heartbeat": "2s", "cluster_dead_after": "2s"} {
		if err := cfg.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	err := serve(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cluster_dead_after (2s) must be more than cluster_heartbeat (2s)") || errorKind(err) != kindUsage {
		t.Errorf("got %v, want a usage error about cluster_dead_after", err)
	}
}
