package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/treff-im/treff/abuse"
	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/cluster"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/proxyproto"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage/boltstore"
	"golang.org/x/crypto/acme"
	"mellium.im/xmpp/jid"
)

// Config is the community server's configuration: the defaults, overridden
// by a config file, overridden by command-line flags. Each field has a key
// in the config file (given in its comment) and a flag of the same name
// with '-' for '_'.
type Config struct {
	// Domains are the XMPP domains served (key domain, a comma-separated
	// list), normalised. Default: localhost.
	Domains []string
	// Data is the data folder (key data): the bbolt file treff.db, the
	// self-signed certificate and the admin socket. Default: treff-data.
	Data string
	// C2S is the STARTTLS client listener's address (key c2s); empty
	// disables it. Default: 127.0.0.1:5222.
	C2S string
	// C2STLS is the direct TLS client listener's address (key c2s_tls);
	// empty disables it. Default: 127.0.0.1:5223.
	C2STLS string
	// S2S is the listener for other servers (key s2s, port 5269 with
	// STARTTLS); empty disables federation. Default: 127.0.0.1:5269.
	S2S string
	// S2STLS is the direct-TLS listener for other servers (key s2s_tls,
	// XEP-0368); empty disables it. Default: empty.
	S2STLS string
	// S2SCA are PEM files of further certificate authorities trusted for
	// other servers' certificates, besides the system's (key s2s_ca).
	S2SCA []string
	// S2SResolve are static routes to other servers, domain=host:port,
	// used instead of DNS (key s2s_resolve).
	S2SResolve map[string]string
	// S2SSelfSigned accepts other servers' self-signed certificates as
	// proof of their domain (key s2s_self_signed). For test setups only.
	// Default: no.
	S2SSelfSigned bool
	// S2SDialback allows Server Dialback for servers whose certificate
	// does not verify (key s2s_dialback). Default: yes.
	S2SDialback bool
	// S2SIdleTimeout closes server-to-server streams idle that long (key
	// s2s_idle_timeout). Default: 10m.
	S2SIdleTimeout time.Duration
	// ComponentListen is the listener for external components (key
	// component_listen, XEP-0114). Components authenticate with a
	// plain-text handshake over an unencrypted stream: keep it on
	// loopback or a private network. It runs only when Components lists
	// some. Default: 127.0.0.1:5347.
	ComponentListen string
	// Components are the external components' domains and secrets (key
	// component, comma-separated DOMAIN=SECRET; a secret cannot hold a
	// comma). Default: none.
	Components map[string]string
	// HTTP is the plain HTTP listener for web clients (key http; loopback
	// addresses only, for a local reverse proxy or tests); empty disables
	// it. Default: 127.0.0.1:5280.
	HTTP string
	// HTTPS is the HTTPS listener (key https): WebSocket, connection
	// discovery, the status page. Empty disables it. Default:
	// 127.0.0.1:5281.
	HTTPS string
	// HTTPOrigins are the web page origins allowed to open WebSocket
	// connections (key http_origins); empty allows pages of this server.
	HTTPOrigins []string
	// WebSocketSeeOther, if set, sends WebSocket clients to another
	// endpoint (key websocket_see_other_uri, RFC 7395 see-other-uri).
	WebSocketSeeOther string
	// BOSHSessionsPerAddress caps the BOSH sessions open at once from one
	// client IP address (key bosh_sessions_per_address; 0: no cap), kept
	// in memory only. Loopback clients (a local reverse proxy) are not
	// counted. Default: 10.
	BOSHSessionsPerAddress int
	// StatusTemplate is an html/template file replacing the built-in
	// status page (key status_template).
	StatusTemplate string
	// HTTPURL is the public base URL of the https listener, as clients
	// reach it (key http_url), e.g. https://chat.example.org/ behind a
	// reverse proxy. Empty means https://DOMAIN:PORT/ of the https
	// listener.
	HTTPURL string
	// Upload turns on HTTP file upload (XEP-0363) on upload.DOMAIN, with
	// files kept in Data/uploads (key upload; needs https). Default: yes.
	Upload bool
	// UploadMaxSize is the largest file accepted (key upload_max_size).
	// Default: 10M.
	UploadMaxSize int64
	// UploadQuota is the most bytes of files a user may keep (key
	// upload_quota). Default: 100M.
	UploadQuota int64
	// UploadExpire is how long shared files are kept (key
	// upload_expire). Default: 30d.
	UploadExpire time.Duration
	// ContactAbuse, ContactAdmin, ContactSupport and ContactSecurity are
	// the server's contact addresses (XEP-0157), xmpp:, mailto: or https:
	// URIs (keys contact_abuse, contact_admin, contact_support,
	// contact_security; comma-separated), published in service discovery
	// and on the status page. Other servers look for an abuse address
	// (JabberSPAM). Default: none.
	ContactAbuse, ContactAdmin, ContactSupport, ContactSecurity []string
	// STUN are STUN servers offered to clients for calls (XEP-0215),
	// host:port (key stun, comma-separated). Default: none.
	STUN []string
	// TURN are TURN servers offered to clients for calls across NAT,
	// host:port, each over UDP and TCP (key turn, comma-separated).
	// Default: none.
	TURN []string
	// TURNSecret is the TURN servers' shared secret (coturn's
	// static-auth-secret with use-auth-secret), from which users get
	// credentials valid for TURNTTL (key turn_secret). Default: none (TURN
	// servers are listed without credentials).
	TURNSecret string
	// TURNTTL is how long TURN credentials are valid (key turn_ttl).
	// Default: 24h.
	TURNTTL time.Duration
	// Push lets users' phones be woken by push notifications (XEP-0357,
	// key push): the app server their client names learns who wrote
	// and how many messages. Default: yes.
	Push bool
	// PushBody includes the message's text in push notifications (key
	// push_body), so that the app server and the push service behind it
	// (Google's, Apple's) read it. Default: no.
	PushBody bool
	// WebClient is a folder holding Converse.js (its dist/ folder, as
	// scripts/fetch-converse.sh puts it), served at /chat/ and set up to
	// connect to this server's WebSocket (key web_client).
	WebClient string
	// Cert and Key are PEM files with the certificate chain and its private
	// key (keys cert and key). Both empty means a self-signed certificate
	// kept in Data.
	Cert, Key string
	// ACME makes the server obtain and renew its certificate from an ACME
	// CA (RFC 8555) for its domains and their services (key acme: yes or
	// no; conflicts with cert). Default: no.
	ACME bool
	// ACMEDirectory is the ACME CA's directory URL (key acme_directory).
	// Default: Let's Encrypt's.
	ACMEDirectory string
	// ACMEEmail is the contact address given to the CA (key acme_email);
	// empty gives none. Default: empty.
	ACMEEmail string
	// LogLevel is the lowest level logged (key log_level: debug, info, warn
	// or error). Default: info.
	LogLevel slog.Level
	// MaxStanzaSize is the largest stanza accepted, in bytes (key
	// max_stanza_size). Default: 262144.
	MaxStanzaSize int
	// MaxAttributes is the most attributes one start tag of an
	// authenticated client may have (key max_attributes); before
	// authentication the limit is at most 100. Default: 100.
	MaxAttributes int
	// IdleTimeout closes a stream silent for that long (key idle_timeout);
	// 0 means never. Default: 14m.
	IdleTimeout time.Duration
	// ResumeTimeout is how long a session with stream management whose
	// connection broke waits for its client to resume it (key
	// resume_timeout, XEP-0198); 0 disables resumption. Default: 5m.
	ResumeTimeout time.Duration
	// NegotiationTimeout bounds the time from connect to a bound resource
	// (key negotiation_timeout). Default: 30s.
	NegotiationTimeout time.Duration
	// WriteTimeout disconnects a client that does not read for that long
	// (key write_timeout). Default: 30s.
	WriteTimeout time.Duration
	// MaxQueue is the most bytes queued for one client before it is
	// disconnected as too slow (key max_queue). Default: 1048576.
	MaxQueue int
	// MaxAuthFailures is how many failed logins a stream may make before it
	// is closed (key max_auth_failures). Default: 3.
	MaxAuthFailures int
	// MOTD is the message of the day sent to every client when it binds a
	// resource (key motd); empty sends none.
	MOTD string
	// OfflineLimit is the most offline messages kept per user (key
	// offline_limit). Default: 1000.
	OfflineLimit int
	// PingInterval is how long a client may be silent before the server
	// pings it to check it is still there (key ping_interval); 0 disables
	// server pings. Default: 5m.
	PingInterval time.Duration
	// HideVersion stops the server from telling its software and version
	// (key hide_version: yes or no). Default: no.
	HideVersion bool
	// NewAccountAge is how long an account counts as new, with the
	// stricter limits below (key new_account_age, "d" counts days; 0:
	// no account is new). Default: 24h.
	NewAccountAge time.Duration
	// LimitStrangers limits the messages and subscription requests a new
	// account sends to JIDs that are not its contacts (key
	// limit_strangers, COUNT/DURATION or none). Default: 30/1h.
	LimitStrangers ratelimit.Limit
	// LimitMessages limits every account's messages (key limit_messages).
	// Default: 600/1m.
	LimitMessages ratelimit.Limit
	// LimitJoins limits every account's group chat joins (key
	// limit_joins). Default: 100/1m.
	LimitJoins ratelimit.Limit
	// LimitRoomCreations limits the rooms a new account creates (key
	// limit_room_creations). Default: 5/1h.
	LimitRoomCreations ratelimit.Limit
	// LimitUploads limits the upload slots a new account asks for (key
	// limit_uploads). Default: 20/1h.
	LimitUploads ratelimit.Limit
	// LimitPreAuth limits the requests (IQs) one connection makes before
	// logging in, e.g. to register (key limit_pre_auth). Default: 20/1m.
	LimitPreAuth ratelimit.Limit
	// FilterStrangers is what happens by default to messages and
	// subscription requests from JIDs not in a user's roster (key
	// filter_strangers: no, drop or quarantine); each user may choose
	// otherwise with an ad-hoc command. Default: no.
	FilterStrangers antispam.Mode

	// Cluster runs this server as one node of several sharing the
	// service (key cluster, package cluster): sessions and stanzas are
	// routed between nodes on NATS. It needs a store all nodes share
	// (store = postgres), which bbolt is not. Default: no.
	Cluster bool
	// ClusterNATS is an external NATS server or cluster to route through
	// (key cluster_nats, nats://host:port, comma-separated); empty with
	// cluster: an embedded NATS server. Default: empty.
	ClusterNATS string
	// ClusterListen is where the embedded NATS server accepts the other
	// nodes' routes (key cluster_listen, host:port). Default: empty.
	ClusterListen string
	// ClusterPeers are the other nodes' cluster_listen addresses (key
	// cluster_peers, comma-separated host:port). Default: none.
	ClusterPeers []string
	// ClusterHeartbeat is how often this node tells the others it is
	// alive (key cluster_heartbeat). Default: 1s.
	ClusterHeartbeat time.Duration
	// ClusterDeadAfter is how long a node may be silent before the others
	// drop its sessions (key cluster_dead_after; more than
	// cluster_heartbeat). Default: 4s.
	ClusterDeadAfter time.Duration
	// KeepInFlight is whether a message sent to a connected client with
	// stream management is written to offline storage until the client
	// acknowledges it (key keep_in_flight: yes, no or auto), so that a
	// crash of this server or node loses none that its sender saw
	// acknowledged; it costs a write and a delete per message. auto:
	// yes with cluster = yes, no otherwise (a single server's archive
	// has such messages anyway). Default: auto.
	KeepInFlight string
	// ClusterSecretFile is a file holding a secret all nodes share (key
	// cluster_secret_file): the embedded NATS servers accept routes only
	// from servers that know it. Default: none (any route is accepted).
	ClusterSecretFile string
	// ClusterTLSCert and ClusterTLSKey are this node's certificate chain
	// and key for the embedded NATS servers' routes (keys
	// cluster_tls_cert, cluster_tls_key; PEM files): with
	// ClusterTLSCA the routes are encrypted and each server proves
	// itself with its certificate (mutual TLS). With cluster_nats, the
	// client certificate presented to the external NATS, if it asks for
	// one. Default: none (plain routes).
	ClusterTLSCert, ClusterTLSKey string
	// ClusterTLSCA is the CA certificates (PEM file) that sign every
	// node's route certificate (key cluster_tls_ca); with cluster_nats,
	// the CAs trusted for the external NATS server's certificate (a
	// tls:// URL). Default: none.
	ClusterTLSCA string
	// NodeName is this node's name, unique in the cluster (key
	// node_name; letters, digits, '-' and '_'). Default: empty, meaning
	// the host name (cluster.HostName).
	NodeName string
	// ClusterRoomQueue is how many group chat stanzas other nodes
	// forwarded to this node (the owner of their rooms) may wait for it
	// (key cluster_room_queue); beyond it they are refused with
	// resource-constraint. Default: cluster.DefaultRoomQueue (4096).
	ClusterRoomQueue int
	// ClusterDirectedPresence is how many of a session's directed
	// presence recipients are published to the other nodes, which tell
	// them the session is gone if this node dies (key
	// cluster_directed_presence). Default: roster.DefaultMaxSharedDirected
	// (64).
	ClusterDirectedPresence int
	// Registration is the in-band registration policy at start (key
	// registration: open, closed or invite); the registration admin command
	// switches it while the server runs. Default: closed.
	Registration register.Policy
	// RegistrationMinPassword is the shortest password accepted at
	// registration (key registration_min_password). Default: 8.
	RegistrationMinPassword int
	// RegistrationPerAddress limits registrations per client address (key
	// registration_per_address, as COUNT/DURATION), kept in memory only.
	// Default: 3/1h.
	RegistrationPerAddress register.Limit
	// AuthLimit limits failed logins per client address (key auth_limit,
	// as COUNT/DURATION; IPv6 per /64), kept in memory only; then the
	// address gets temporary-auth-failure until one attempt comes back
	// every DURATION/COUNT. Default: 20/1h (ejabberd mod_fail2ban's).
	AuthLimit register.Limit
	// AuthLimitAccount is the ceiling of failed logins per account (key
	// auth_limit_account, COUNT/DURATION): over it, the account's logins
	// from addresses that failed recently are refused; its owner
	// elsewhere is not locked out. Default: 100/1h.
	AuthLimitAccount register.Limit
	// RegistrationGlobal limits registrations on the whole server (key
	// registration_global, as COUNT/DURATION). Default: 60/1h.
	RegistrationGlobal register.Limit
	// RegistrationHoldDeleted is how long the name of a deleted account
	// cannot be registered again (key registration_hold_deleted, "d"
	// counts days). Default: 30d.
	RegistrationHoldDeleted time.Duration
	// MUC enables the group chat service on conference.DOMAIN for each
	// domain (key muc: yes or no). Default: yes.
	MUC bool
	// MUCCreators, if not empty, are the only users who may create rooms
	// (key muc_creators, comma-separated JIDs). Default: every user of
	// this server.
	MUCCreators []string
	// MUCMaxOccupants is the most occupants of a room (key
	// muc_max_occupants). Default: 200.
	MUCMaxOccupants int
	// MUCMaxHistory is how many messages a room keeps for new occupants
	// (key muc_max_history). Default: 20.
	MUCMaxHistory int
	// MUCMaxQueue is the most bytes a room may have waiting to be sent
	// and stored before it refuses messages with resource-constraint
	// (key muc_max_queue). Default: 4 MiB.
	MUCMaxQueue int
	// MUCMaxRetractable is how many of each room's latest archived
	// messages the room remembers the authors of, so that authors can
	// retract them from the archive (key muc_max_retractable). Default:
	// 1000.
	MUCMaxRetractable int
	// MUCMaxVCard is the largest room vCard (avatar), in bytes (key
	// muc_max_vcard). Default: 256 KiB.
	MUCMaxVCard int
	// PubSub enables the publish-subscribe service (XEP-0060) on
	// pubsub.DOMAIN for each domain (key pubsub: yes or no). Default: yes.
	PubSub bool
	// PubSubCreators, if not empty, are the only users who may create
	// nodes on it (key pubsub_creators, comma-separated JIDs). Default:
	// every user of this server.
	PubSubCreators []string
	// MUCKeepTemporary is how long a temporary room that had occupants
	// when the server stopped is kept after the next start for them to
	// come back (key muc_keep_temporary, "d" counts days; 0: such rooms
	// end at the stop). Default: 1d.
	MUCKeepTemporary time.Duration
	// MUCSaveHistory is how long after a new message a persistent room
	// stores its recent history (key muc_save_history; 0: only at the
	// stop), so that it survives a crash, or a cluster node's death.
	// Default: 10s.
	MUCSaveHistory time.Duration
	// Archive keeps each user's messages, and group chat rooms' messages,
	// on the server for clients to fetch (XEP-0313 message archive; key
	// archive: yes or no). Default: no.
	Archive bool
	// ArchiveRetention is how long archived messages are kept (key
	// archive_retention, "d" counts days; 0 keeps them forever).
	// Default: 365d.
	ArchiveRetention time.Duration
	// ArchiveMaxQueue is the most bytes of archived messages waiting in
	// memory for the disk (while it is full, say) before messages are
	// refused with resource-constraint (key archive_max_queue). Default:
	// 8 MiB.
	ArchiveMaxQueue int
	// Store is where the server keeps its data (key store): "bbolt", the
	// file treff.db in Data, or "postgres", the PostgreSQL database PGDSN
	// (storage/pgstore). Files stay in Data either way. Default: bbolt.
	Store string
	// PGDSN is the PostgreSQL connection string for store = postgres (key
	// pg_dsn), a postgres:// URL or key=value pairs; pool_max_conns in it
	// sets the pool size (default 16). Default: empty.
	PGDSN string
	// FASTExpiry is how long a FAST token (XEP-0484) stays valid: a
	// device that does not log in for that long needs its password again
	// (key fast_expiry, "d" counts days). Default: 21d.
	FASTExpiry time.Duration
	// FASTRotate is the age at which a device's token is replaced by a
	// new one when it logs in with it (key fast_rotate). Default: 1d.
	FASTRotate time.Duration
	// Admins are the bare JIDs allowed to run the administration commands
	// (XEP-0133) from their client (key admins, comma-separated).
	// Default: none.
	Admins []string
	// RTBL are the real-time block lists the server follows (key rtbl,
	// comma-separated JID/NODE, e.g. xmppbl.org/muc_bans_sha256): pubsub
	// nodes whose items name domains, JIDs or their SHA-256 hashes,
	// blocked like the server's own list (community block). Default:
	// none.
	RTBL []string
	// ReportForward, if set, is a JID that gets each spam report (the
	// reported JID, reason and text; never the reporter) as a message, for
	// a block list's maintainers (key report_forward). Default: none.
	ReportForward string
	// NotifyRegistrations sends the admins a message on each account
	// created by in-band registration (key notify_registrations: yes or
	// no). Default: yes. Spam reports (XEP-0377) always go to them.
	NotifyRegistrations bool
	// InvitesByUsers lets every user create invitation links from their
	// client, not only admins (key invites_by_users: yes or no).
	// Default: no.
	InvitesByUsers bool
	// InviteValidity is how long an invitation link can be used (key
	// invite_validity, "d" counts days). Default: 7d.
	InviteValidity time.Duration
	// ExpireAfter is how long an account may go unused (no login; for an
	// account never used, since its creation) before the expire command
	// deletes it (key expire_after, a duration; "d" counts days).
	// Default: 365d.
	ExpireAfter time.Duration
	// ExpireDaily makes the server delete such accounts once a day (key
	// expire_daily: yes or no). Default: no.
	ExpireDaily bool
	// BackupDaily is a folder where the server writes a backup of its data
	// folder once a day (key backup_daily; see backup.go); empty: none.
	// Default: empty.
	BackupDaily string
	// BackupKeep is how many daily backups are kept in BackupDaily; older
	// ones are deleted (key backup_keep). Default: 7.
	BackupKeep int
	// BackupRecipients are the age public keys the daily backups are
	// encrypted for (key backup_recipient, comma-separated); none: not
	// encrypted. Default: none.
	BackupRecipients []string
	// GCPercent is the Go garbage collector's target (key gc_percent, as
	// the GOGC environment variable, which wins if set). Default: 30.
	GCPercent int
	// DebugAddr is a loopback address for Go's profiling endpoints under
	// /debug/pprof/ (key debug_addr); empty disables them. Default: empty.
	DebugAddr string
	// Metrics is the address of the Prometheus endpoint, /metrics (key
	// metrics; "yes" means 127.0.0.1:5282, "no" or empty disables it).
	// Default: empty.
	Metrics string
	// ProxyProtocol are the listeners behind a TCP load balancer that
	// sends HAProxy's PROXY protocol header (key proxy_protocol: no, yes
	// for c2s, c2s_tls, http and https, or a comma-separated list of
	// those names): their clients' addresses come from the header, from
	// trusted sources only (see proxyproto). Default: no.
	ProxyProtocol []string
	// ProxyTrusted are the load balancers' addresses or prefixes whose
	// headers are read, besides loopback (key proxy_protocol_trusted,
	// comma-separated). Default: none (loopback only).
	ProxyTrusted []netip.Prefix
	// ProxyTimeout bounds a trusted source's header (key
	// proxy_protocol_timeout). Default: 5s.
	ProxyTimeout time.Duration
	// ProxyMaxHeader is the longest PROXY protocol version 2 header
	// accepted, TLVs included (key proxy_protocol_max_header, bytes).
	// Default: 1024.
	ProxyMaxHeader int
	// DrainSeeOtherHost is where a draining node sends its clients
	// (key drain_see_other_host, host or host:port, e.g. the load
	// balancer's name): streams over TCP end with <see-other-host/>
	// naming it (RFC 6120 4.9.3.19); empty: <system-shutdown/>.
	// Default: empty.
	DrainSeeOtherHost string
	// DrainAckWait is how long a draining node waits for each client
	// with stream management to acknowledge what it received before
	// closing its stream (key drain_ack_wait). Default: 5s.
	DrainAckWait time.Duration
}

// Default returns the configuration used when neither a config file nor a
// flag says otherwise.
func Default() Config {
	return Config{
		Domains:                []string{"localhost"},
		Data:                   "treff-data",
		C2S:                    "127.0.0.1:5222",
		C2STLS:                 "127.0.0.1:5223",
		ACMEDirectory:          acme.LetsEncryptURL,
		S2S:                    "127.0.0.1:5269",
		ComponentListen:        "127.0.0.1:5347",
		HTTP:                   "127.0.0.1:5280",
		HTTPS:                  "127.0.0.1:5281",
		BOSHSessionsPerAddress: bosh.DefaultMaxSessionsPerAddress,
		Upload:                 true,
		UploadMaxSize:          10 << 20,
		UploadQuota:            100 << 20,
		UploadExpire:           30 * 24 * time.Hour,
		TURNTTL:                24 * time.Hour,
		Push:                   true,
		PubSub:                 true,
		S2SDialback:            true,
		S2SIdleTimeout:         10 * time.Minute,
		LogLevel:               slog.LevelInfo,
		MaxStanzaSize:          256 << 10,
		MaxAttributes:          100,
		IdleTimeout:            14 * time.Minute,
		ResumeTimeout:          5 * time.Minute,
		NegotiationTimeout:     30 * time.Second,
		WriteTimeout:           30 * time.Second,
		MaxQueue:               1 << 20,
		MaxAuthFailures:        3,
		OfflineLimit:           1000,
		PingInterval:           5 * time.Minute,
		GCPercent:              30,
		ExpireAfter:            365 * 24 * time.Hour,
		BackupKeep:             7,
		ArchiveRetention:       365 * 24 * time.Hour,
		FASTExpiry:             21 * 24 * time.Hour,
		FASTRotate:             24 * time.Hour,

		NewAccountAge:      antispam.DefaultNewAccountAge,
		LimitStrangers:     antispam.DefaultStrangers,
		LimitMessages:      antispam.DefaultMessages,
		LimitJoins:         antispam.DefaultJoins,
		LimitRoomCreations: antispam.DefaultCreations,
		LimitUploads:       antispam.DefaultUploads,
		LimitPreAuth:       ratelimit.Limit{N: 20, Period: time.Minute},
		FilterStrangers:    antispam.Off,

		Registration:            register.Closed,
		RegistrationMinPassword: 8,
		RegistrationPerAddress:  register.Limit{N: 3, Period: time.Hour},
		RegistrationGlobal:      register.Limit{N: 60, Period: time.Hour},
		AuthLimit:               register.Limit{N: 20, Period: time.Hour},
		AuthLimitAccount:        register.Limit{N: 100, Period: time.Hour},
		RegistrationHoldDeleted: 30 * 24 * time.Hour,
		InviteValidity:          7 * 24 * time.Hour,
		NotifyRegistrations:     true,
		MUC:                     true,
		ClusterRoomQueue:        cluster.DefaultRoomQueue,
		ClusterDirectedPresence: roster.DefaultMaxSharedDirected,
		MUCMaxOccupants:         200,
		MUCMaxHistory:           20,
		MUCMaxQueue:             muc.DefaultMaxQueueBytes,
		MUCMaxRetractable:       muc.DefaultMaxRetractable,
		MUCMaxVCard:             muc.DefaultMaxVCardSize,
		MUCKeepTemporary:        muc.DefaultKeepTemporary,
		MUCSaveHistory:          10 * time.Second,
		ArchiveMaxQueue:         boltstore.DefaultArchiveQueueBytes,
		ClusterHeartbeat:        cluster.DefaultHeartbeat,
		ClusterDeadAfter:        cluster.DefaultDeadAfter,
		KeepInFlight:            "auto",
		ProxyTimeout:            proxyproto.DefaultTimeout,
		ProxyMaxHeader:          proxyproto.DefaultMaxHeader,
		DrainAckWait:            5 * time.Second,
		Store:                   storeBolt,
	}
}

// option is one configuration key.
type option struct {
	key   string
	usage string
	set   func(c *Config, v string) error
}

// minStanzaSize is the smallest stanza size limit RFC 6120 13.12 allows.
const minStanzaSize = 10000

var options = []option{
	{"domain", "comma-separated XMPP `domains` to serve", setDomains},
	{"data", "data `folder` (database, self-signed certificate, admin socket)", func(c *Config, v string) error {
		if v == "" {
			return fmt.Errorf("must not be empty")
		}
		c.Data = v
		return nil
	}},
	{"c2s", "STARTTLS listener `address` (empty disables it)", func(c *Config, v string) error {
		return setAddr(&c.C2S, v)
	}},
	{"c2s_tls", "direct TLS listener `address` (empty disables it)", func(c *Config, v string) error {
		return setAddr(&c.C2STLS, v)
	}},
	{"http", "plain HTTP listener `address` for web clients, loopback only (empty disables it)", func(c *Config, v string) error {
		if v != "" && !isLoopback(v) {
			return fmt.Errorf("%q: plain HTTP is only for loopback addresses; use https", v)
		}
		return setAddr(&c.HTTP, v)
	}},
	{"https", "HTTPS listener `address`: WebSocket, connection discovery, status page (empty disables it)", func(c *Config, v string) error {
		return setAddr(&c.HTTPS, v)
	}},
	{"http_origins", "comma-separated web page `origins` allowed to connect over WebSocket (empty: this server's pages)", func(c *Config, v string) error {
		c.HTTPOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.HTTPOrigins = append(c.HTTPOrigins, o)
			}
		}
		return nil
	}},
	{"websocket_see_other_uri", "wss:// `URL` to send WebSocket clients to instead (the endpoint moved); empty: none", func(c *Config, v string) error {
		if v != "" && !strings.HasPrefix(v, "wss://") && !strings.HasPrefix(v, "ws://") {
			return fmt.Errorf("%q is not a ws:// or wss:// URL", v)
		}
		c.WebSocketSeeOther = v
		return nil
	}},
	{"bosh_sessions_per_address", "BOSH sessions open at once per client address (`count`; 0: no cap)", func(c *Config, v string) error {
		return setInt(&c.BOSHSessionsPerAddress, v, 0)
	}},
	{"status_template", "html/template `file` replacing the built-in status page", func(c *Config, v string) error {
		c.StatusTemplate = v
		return nil
	}},
	{"http_url", "public base `URL` of the https listener (empty: https://DOMAIN:PORT/)", func(c *Config, v string) error {
		if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
			return fmt.Errorf("%q is not an http(s) URL", v)
		}
		c.HTTPURL = v
		return nil
	}},
	{"upload", "HTTP file upload on upload.DOMAIN (yes or no; needs https)", func(c *Config, v string) error {
		return setBool(&c.Upload, v)
	}},
	{"upload_max_size", "largest file accepted (`size` like 10M)", func(c *Config, v string) error {
		return setSize(&c.UploadMaxSize, v)
	}},
	{"upload_quota", "most file bytes a user may keep (`size` like 100M)", func(c *Config, v string) error {
		return setSize(&c.UploadQuota, v)
	}},
	{"upload_expire", "keep shared files this long (`duration` or days like 30d)", func(c *Config, v string) error {
		return setDays(&c.UploadExpire, v)
	}},
	{"contact_abuse", "where to report abuse (`URIs`: xmpp:, mailto:, https:, comma-separated; XEP-0157)", func(c *Config, v string) error {
		return setURIs(&c.ContactAbuse, v)
	}},
	{"contact_admin", "the administrators' addresses (`URIs`)", func(c *Config, v string) error {
		return setURIs(&c.ContactAdmin, v)
	}},
	{"contact_support", "where users get help (`URIs`)", func(c *Config, v string) error {
		return setURIs(&c.ContactSupport, v)
	}},
	{"contact_security", "where to report security issues (`URIs`)", func(c *Config, v string) error {
		return setURIs(&c.ContactSecurity, v)
	}},
	{"stun", "STUN servers for calls (`host:port,...`)", func(c *Config, v string) error {
		return setHostPorts(&c.STUN, v)
	}},
	{"turn", "TURN servers for calls across NAT (`host:port,...`; UDP and TCP)", func(c *Config, v string) error {
		return setHostPorts(&c.TURN, v)
	}},
	{"turn_secret", "the TURN servers' shared `secret` (coturn's static-auth-secret) for time-limited credentials", func(c *Config, v string) error {
		c.TURNSecret = v
		return nil
	}},
	{"turn_ttl", "how long TURN credentials are valid (`duration`)", func(c *Config, v string) error {
		return setDuration(&c.TURNTTL, v, false)
	}},
	{"push", "wake users' phones with push notifications (XEP-0357; `yes|no`): their app server learns who wrote and how many messages", func(c *Config, v string) error {
		return setBool(&c.Push, v)
	}},
	{"push_body", "include the message text in push notifications (`yes|no`; the app server and Google's or Apple's push service read it)", func(c *Config, v string) error {
		return setBool(&c.PushBody, v)
	}},
	{"web_client", "`folder` with Converse.js (dist/) to serve at /chat/ (empty: none)", func(c *Config, v string) error {
		c.WebClient = v
		return nil
	}},
	{"s2s", "listener `address` for other servers, STARTTLS (empty disables federation)", func(c *Config, v string) error {
		return setAddr(&c.S2S, v)
	}},
	{"s2s_tls", "direct TLS listener `address` for other servers (empty disables it)", func(c *Config, v string) error {
		return setAddr(&c.S2STLS, v)
	}},
	{"s2s_ca", "comma-separated PEM `files` of further authorities trusted for other servers' certificates", func(c *Config, v string) error {
		c.S2SCA = nil
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				c.S2SCA = append(c.S2SCA, f)
			}
		}
		return nil
	}},
	{"s2s_resolve", "static routes to other servers, comma-separated `domain=host:port`, used instead of DNS", func(c *Config, v string) error {
		routes := map[string]string{}
		for _, r := range strings.Split(v, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			d, addr, ok := strings.Cut(r, "=")
			if !ok {
				return fmt.Errorf("%q is not domain=host:port", r)
			}
			n, err := normalizeDomain(strings.TrimSpace(d))
			if err != nil {
				return err
			}
			var a string
			if err := setAddr(&a, strings.TrimSpace(addr)); err != nil || a == "" {
				return fmt.Errorf("%q is not domain=host:port", r)
			}
			routes[n] = a
		}
		if len(routes) == 0 {
			routes = nil
		}
		c.S2SResolve = routes
		return nil
	}},
	{"s2s_self_signed", "accept other servers' self-signed certificates (yes or no; test setups only)", func(c *Config, v string) error {
		return setBool(&c.S2SSelfSigned, v)
	}},
	{"s2s_dialback", "allow Server Dialback for servers whose certificate does not verify (yes or no)", func(c *Config, v string) error {
		return setBool(&c.S2SDialback, v)
	}},
	{"s2s_idle_timeout", "close server-to-server streams idle for this `duration`", func(c *Config, v string) error {
		return setDuration(&c.S2SIdleTimeout, v, false)
	}},
	{"component_listen", "listener `address` for external components (XEP-0114; keep it on loopback)", func(c *Config, v string) error {
		return setAddr(&c.ComponentListen, v)
	}},
	{"component", "external components, comma-separated `DOMAIN=SECRET` (XEP-0114)", func(c *Config, v string) error {
		comps := map[string]string{}
		for _, r := range strings.Split(v, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			d, secret, ok := strings.Cut(r, "=")
			if !ok || strings.TrimSpace(secret) == "" {
				return fmt.Errorf("%q is not DOMAIN=SECRET", r)
			}
			n, err := normalizeDomain(strings.TrimSpace(d))
			if err != nil {
				return err
			}
			if _, dup := comps[n]; dup {
				return fmt.Errorf("component %s listed twice", n)
			}
			comps[n] = strings.TrimSpace(secret)
		}
		if len(comps) == 0 {
			comps = nil
		}
		c.Components = comps
		return nil
	}},
	{"cert", "certificate chain PEM `file` (default: self-signed, in the data folder)", func(c *Config, v string) error {
		c.Cert = v
		return nil
	}},
	{"key", "private key PEM `file` for -cert", func(c *Config, v string) error {
		c.Key = v
		return nil
	}},
	{"acme", "obtain and renew the certificate from an ACME CA such as Let's Encrypt (`yes|no`; the CA checks the names on the https listener at port 443, or on the http listener through a proxy on port 80)", func(c *Config, v string) error {
		return setBool(&c.ACME, v)
	}},
	{"acme_directory", "ACME CA's directory `URL`", func(c *Config, v string) error {
		if !strings.HasPrefix(v, "https://") {
			return fmt.Errorf("%q is not an https URL", v)
		}
		c.ACMEDirectory = v
		return nil
	}},
	{"acme_email", "contact `address` given to the ACME CA (empty: none)", func(c *Config, v string) error {
		if v != "" && !strings.Contains(v, "@") {
			return fmt.Errorf("%q is not an email address", v)
		}
		c.ACMEEmail = v
		return nil
	}},
	{"log_level", "log `level`: debug, info, warn or error", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "debug":
			c.LogLevel = slog.LevelDebug
		case "info":
			c.LogLevel = slog.LevelInfo
		case "warn":
			c.LogLevel = slog.LevelWarn
		case "error":
			c.LogLevel = slog.LevelError
		default:
			return fmt.Errorf("%q is not one of debug, info, warn, error", v)
		}
		return nil
	}},
	{"max_stanza_size", "largest stanza accepted, in `bytes`", func(c *Config, v string) error {
		return setInt(&c.MaxStanzaSize, v, minStanzaSize)
	}},
	{"max_attributes", "most attributes per start tag from an authenticated client (`count`, at least 16)", func(c *Config, v string) error {
		return setInt(&c.MaxAttributes, v, 16)
	}},
	{"idle_timeout", "close streams silent for this `duration` (0: never)", func(c *Config, v string) error {
		return setDuration(&c.IdleTimeout, v, true)
	}},
	{"resume_timeout", "keep the session of a client whose connection broke this `duration` for it to resume (0: no resumption)", func(c *Config, v string) error {
		return setDuration(&c.ResumeTimeout, v, true)
	}},
	{"negotiation_timeout", "time allowed from connect to a bound resource (`duration`)", func(c *Config, v string) error {
		return setDuration(&c.NegotiationTimeout, v, false)
	}},
	{"write_timeout", "disconnect clients that do not read for this `duration`", func(c *Config, v string) error {
		return setDuration(&c.WriteTimeout, v, false)
	}},
	{"max_queue", "most `bytes` queued for a slow client before it is disconnected", func(c *Config, v string) error {
		return setInt(&c.MaxQueue, v, 1)
	}},
	{"max_auth_failures", "failed logins allowed per stream (`count`)", func(c *Config, v string) error {
		return setInt(&c.MaxAuthFailures, v, 1)
	}},
	{"motd", "message of the day sent to every client that binds a resource (`text`; empty: none)", func(c *Config, v string) error {
		c.MOTD = v
		return nil
	}},
	{"offline_limit", "most offline messages kept per user (`count`)", func(c *Config, v string) error {
		return setInt(&c.OfflineLimit, v, 1)
	}},
	{"ping_interval", "ping clients silent for this `duration` (0: never)", func(c *Config, v string) error {
		return setDuration(&c.PingInterval, v, true)
	}},
	{"registration", "in-band registration `policy` at start: open, closed or invite", func(c *Config, v string) error {
		p, err := register.ParsePolicy(v)
		if err != nil {
			return fmt.Errorf("%q is not open, closed or invite", v)
		}
		c.Registration = p
		return nil
	}},
	{"registration_min_password", "shortest password accepted at registration (`characters`)", func(c *Config, v string) error {
		return setInt(&c.RegistrationMinPassword, v, 1)
	}},
	{"registration_per_address", "registrations allowed per client address (`COUNT/DURATION`, e.g. 3/1h)", func(c *Config, v string) error {
		return setLimit(&c.RegistrationPerAddress, v)
	}},
	{"auth_limit", "failed logins allowed per client address (`COUNT/DURATION`, e.g. 20/1h; IPv6 per /64), then temporary-auth-failure", func(c *Config, v string) error {
		return setLimit(&c.AuthLimit, v)
	}},
	{"auth_limit_account", "failed logins per account (`COUNT/DURATION`) over which its logins from addresses that failed are refused", func(c *Config, v string) error {
		return setLimit(&c.AuthLimitAccount, v)
	}},
	{"registration_global", "registrations allowed on the whole server (`COUNT/DURATION`, e.g. 60/1h)", func(c *Config, v string) error {
		return setLimit(&c.RegistrationGlobal, v)
	}},
	{"registration_hold_deleted", "time the name of a deleted account cannot be registered again (`duration`, \"d\" counts days)", func(c *Config, v string) error {
		return setDays(&c.RegistrationHoldDeleted, v)
	}},
	{"muc", "group chat service on conference.DOMAIN (`yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.MUC, v)
	}},
	{"muc_creators", "comma-separated `JIDs` of the only users who may create rooms (empty: every user of this server)", func(c *Config, v string) error {
		return setJIDs(&c.MUCCreators, v)
	}},
	{"muc_max_occupants", "most occupants of a group chat room (`count`)", func(c *Config, v string) error {
		return setInt(&c.MUCMaxOccupants, v, 1)
	}},
	{"muc_max_history", "messages a room keeps for new occupants (`count`)", func(c *Config, v string) error {
		return setInt(&c.MUCMaxHistory, v, 1)
	}},
	{"muc_max_queue", "most `bytes` a group chat room may have waiting to be sent and stored", func(c *Config, v string) error {
		return setInt(&c.MUCMaxQueue, v, 1)
	}},
	{"muc_max_retractable", "how many of a room's latest archived messages their authors can retract from the archive (`count`)", func(c *Config, v string) error {
		return setInt(&c.MUCMaxRetractable, v, 1)
	}},
	{"muc_max_vcard", "largest room vCard (avatar), in `bytes`", func(c *Config, v string) error {
		return setInt(&c.MUCMaxVCard, v, 1)
	}},
	{"pubsub", "publish-subscribe service on pubsub.DOMAIN (XEP-0060; `yes|no`)", func(c *Config, v string) error {
		return setBool(&c.PubSub, v)
	}},
	{"pubsub_creators", "comma-separated `JIDs` of the only users who may create pubsub nodes (empty: every user of this server)", func(c *Config, v string) error {
		return setJIDs(&c.PubSubCreators, v)
	}},
	{"muc_save_history", "time after a new message until a persistent room stores its recent history (`duration`; 0: only at the stop)", func(c *Config, v string) error {
		return setDuration(&c.MUCSaveHistory, v, true)
	}},
	{"muc_keep_temporary", "time a temporary room with occupants at the stop is kept after the next start (`duration`, \"d\" counts days; 0: it ends at the stop)", func(c *Config, v string) error {
		if v == "0" {
			c.MUCKeepTemporary = 0
			return nil
		}
		return setDays(&c.MUCKeepTemporary, v)
	}},
	{"store", "where data is kept: `bbolt` (treff.db in the data folder) or postgres (pg_dsn)", func(c *Config, v string) error {
		if v != storeBolt && v != storePostgres {
			return fmt.Errorf("%q is not bbolt or postgres", v)
		}
		c.Store = v
		return nil
	}},
	{"pg_dsn", "PostgreSQL connection `string` for store = postgres (postgres://USER@HOST/DB?pool_max_conns=16)", func(c *Config, v string) error {
		c.PGDSN = v
		return nil
	}},
	{"archive_max_queue", "most `bytes` of archived messages waiting in memory for the disk before messages are refused", func(c *Config, v string) error {
		return setInt(&c.ArchiveMaxQueue, v, 64<<10)
	}},
	{"archive", "keep users' messages on the server for their clients (XEP-0313; `yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.Archive, v)
	}},
	{"archive_retention", "how long archived messages are kept (`duration`, \"d\" counts days; 0: forever)", func(c *Config, v string) error {
		if v == "0" {
			c.ArchiveRetention = 0
			return nil
		}
		return setDays(&c.ArchiveRetention, v)
	}},
	{"fast_expiry", "how long a FAST login token stays valid (`duration`, \"d\" counts days)", func(c *Config, v string) error {
		return setDays(&c.FASTExpiry, v)
	}},
	{"fast_rotate", "replace a device's FAST token when it logs in with one this old (`duration`, \"d\" counts days)", func(c *Config, v string) error {
		return setDays(&c.FASTRotate, v)
	}},
	{"admins", "comma-separated `JIDs` allowed to run the administration commands from their client", func(c *Config, v string) error {
		return setJIDs(&c.Admins, v)
	}},
	{"rtbl", "comma-separated real-time block lists to follow, as `JID/NODE` (e.g. xmppbl.org/muc_bans_sha256)", func(c *Config, v string) error {
		var out []string
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			if _, err := abuse.ParseFeed(f); err != nil {
				return err
			}
			out = append(out, f)
		}
		c.RTBL = out
		return nil
	}},
	{"report_forward", "`JID` that gets each spam report (reported JID, reason, text; not the reporter), e.g. a block list's reporting address", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "" {
			c.ReportForward = ""
			return nil
		}
		j, err := jid.Parse(v)
		if err != nil {
			return fmt.Errorf("%q is not a JID", v)
		}
		c.ReportForward = j.String()
		return nil
	}},
	{"notify_registrations", "send the admins a message on each in-band registration (`yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.NotifyRegistrations, v)
	}},
	{"invites_by_users", "let every user create invitation links (`yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.InvitesByUsers, v)
	}},
	{"invite_validity", "how long an invitation link can be used (`duration`, \"d\" counts days)", func(c *Config, v string) error {
		return setDays(&c.InviteValidity, v)
	}},
	{"expire_after", "delete accounts unused for this `duration` (\"d\" counts days, e.g. 365d)", func(c *Config, v string) error {
		return setDays(&c.ExpireAfter, v)
	}},
	{"expire_daily", "delete unused accounts once a day (`yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.ExpireDaily, v)
	}},
	{"backup_daily", "write a backup of the data folder into this `folder` once a day (empty: none)", func(c *Config, v string) error {
		c.BackupDaily = v
		return nil
	}},
	{"backup_keep", "keep this `number` of daily backups, deleting older ones", func(c *Config, v string) error {
		return setInt(&c.BackupKeep, v, 1)
	}},
	{"backup_recipient", "encrypt the daily backups for these comma-separated age public `keys` (empty: not encrypted)", func(c *Config, v string) error {
		keys, err := parseRecipientList(v)
		c.BackupRecipients = keys
		return err
	}},
	{"gc_percent", "Go garbage collector target `percent` (as GOGC, which wins if set)", func(c *Config, v string) error {
		return setInt(&c.GCPercent, v, 1)
	}},
	{"debug_addr", "loopback `address` for Go's /debug/pprof/ profiling endpoints (empty: none)", func(c *Config, v string) error {
		if v == "" {
			c.DebugAddr = ""
			return nil
		}
		host, _, err := net.SplitHostPort(v)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%q is not a loopback address: the profiling endpoints must not be reachable from outside", v)
		}
		c.DebugAddr = v
		return nil
	}},
	{"metrics", "`address` of the Prometheus /metrics endpoint (\"yes\": 127.0.0.1:5282; empty: none)", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "", "no":
			c.Metrics = ""
			return nil
		case "yes":
			c.Metrics = defaultMetricsAddr
			return nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not host:port, yes or no", v)
		}
		c.Metrics = v
		return nil
	}},
	{"hide_version", "do not tell clients the server software and version (`yes` or `no`)", func(c *Config, v string) error {
		return setBool(&c.HideVersion, v)
	}},
	{"new_account_age", "how long an account counts as new, with stricter limits (`duration`, \"d\" counts days; 0: no account is new)", func(c *Config, v string) error {
		if strings.TrimSpace(v) == "0" {
			c.NewAccountAge = 0
			return nil
		}
		return setDays(&c.NewAccountAge, v)
	}},
	{"limit_strangers", "messages and subscription requests a new account may send to JIDs not its contacts (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitStrangers, v)
	}},
	{"limit_messages", "messages any account may send (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitMessages, v)
	}},
	{"limit_joins", "group chats any account may enter (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitJoins, v)
	}},
	{"limit_room_creations", "group chats a new account may create (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitRoomCreations, v)
	}},
	{"limit_uploads", "upload slots a new account may ask for (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitUploads, v)
	}},
	{"limit_pre_auth", "requests one connection may make before logging in (`COUNT/DURATION` or none)", func(c *Config, v string) error {
		return setRate(&c.LimitPreAuth, v)
	}},
	{"cluster", "run as one node of a cluster routed on NATS (`yes` or `no`; needs a shared store)", func(c *Config, v string) error {
		return setBool(&c.Cluster, v)
	}},
	{"keep_in_flight", "store messages for connected clients with stream management until they acknowledge them (`yes`, `no` or `auto`: yes in a cluster)", func(c *Config, v string) error {
		switch v = strings.ToLower(strings.TrimSpace(v)); v {
		case "yes", "no", "auto":
			c.KeepInFlight = v
			return nil
		}
		return fmt.Errorf("%q is not yes, no or auto", v)
	}},
	{"cluster_nats", "external NATS `URL`s, comma-separated (empty: the embedded NATS server)", func(c *Config, v string) error {
		c.ClusterNATS = strings.TrimSpace(v)
		return nil
	}},
	{"cluster_listen", "`address` the embedded NATS server takes the other nodes' routes on", func(c *Config, v string) error {
		if v == "" {
			c.ClusterListen = ""
			return nil
		}
		var one []string
		if err := setHostPorts(&one, v); err != nil || len(one) != 1 {
			return fmt.Errorf("%q is not host:port", v)
		}
		c.ClusterListen = one[0]
		return nil
	}},
	{"cluster_peers", "the other nodes' cluster_listen `addresses` (host:port,...)", func(c *Config, v string) error {
		return setHostPorts(&c.ClusterPeers, v)
	}},
	{"cluster_heartbeat", "how often a node tells the others it is alive (`duration`)", func(c *Config, v string) error {
		return setDuration(&c.ClusterHeartbeat, v, false)
	}},
	{"cluster_dead_after", "silence after which the other nodes drop a node's sessions (`duration`, more than cluster_heartbeat)", func(c *Config, v string) error {
		return setDuration(&c.ClusterDeadAfter, v, false)
	}},
	{"cluster_secret_file", "`file` with a secret all nodes share: the embedded NATS servers accept routes only from servers that know it", func(c *Config, v string) error {
		c.ClusterSecretFile = strings.TrimSpace(v)
		return nil
	}},
	{"cluster_tls_cert", "`file` (PEM) with this node's certificate for TLS on the NATS routes (with cluster_tls_key and cluster_tls_ca)", func(c *Config, v string) error {
		c.ClusterTLSCert = strings.TrimSpace(v)
		return nil
	}},
	{"cluster_tls_key", "`file` (PEM) with the key of cluster_tls_cert", func(c *Config, v string) error {
		c.ClusterTLSKey = strings.TrimSpace(v)
		return nil
	}},
	{"cluster_tls_ca", "`file` (PEM) with the CA certificates of the nodes' route certificates (or of the external NATS server's)", func(c *Config, v string) error {
		c.ClusterTLSCA = strings.TrimSpace(v)
		return nil
	}},
	{"cluster_room_queue", "group chat stanzas forwarded by other nodes that may wait for this node (`count`)", func(c *Config, v string) error {
		return setInt(&c.ClusterRoomQueue, v, 1)
	}},
	{"cluster_directed_presence", "directed presence recipients per session published to the other nodes, which tell them if this node dies (`count`)", func(c *Config, v string) error {
		return setInt(&c.ClusterDirectedPresence, v, 1)
	}},
	{"node_name", "this node's `name`, unique in the cluster (letters, digits, - and _)", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		for _, r := range v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q: use letters, digits, - and _", v)
			}
		}
		c.NodeName = v
		return nil
	}},
	{"filter_strangers", "messages and subscription requests from JIDs not in the roster, unless the user chose otherwise (`no`, drop or quarantine)", func(c *Config, v string) error {
		m, err := antispam.ParseMode(v)
		if err != nil {
			return fmt.Errorf("%q is not no, drop or quarantine", v)
		}
		c.FilterStrangers = m
		return nil
	}},
	{"proxy_protocol", "listeners behind a load balancer sending the PROXY protocol (`no`, yes for c2s,c2s_tls,http,https, or a comma-separated list of those)", setProxyProtocol},
	{"proxy_protocol_trusted", "load balancers' `addresses` or prefixes (comma-separated) whose PROXY headers are read, besides loopback", setPrefixes},
	{"proxy_protocol_timeout", "time a trusted source has to send its PROXY header (`duration`)", func(c *Config, v string) error {
		return setDuration(&c.ProxyTimeout, v, false)
	}},
	{"proxy_protocol_max_header", "longest PROXY protocol v2 header accepted (`bytes`, TLVs included)", func(c *Config, v string) error {
		return setInt(&c.ProxyMaxHeader, v, 232)
	}},
	{"drain_see_other_host", "`host[:port]` a draining node sends its clients to (see-other-host; empty: system-shutdown)", func(c *Config, v string) error {
		if strings.ContainsAny(v, " \t/<>&'\"") {
			return fmt.Errorf("%q is not a host or host:port", v)
		}
		c.DrainSeeOtherHost = v
		return nil
	}},
	{"drain_ack_wait", "time a draining node waits for each stream management client's acknowledgement (`duration`)", func(c *Config, v string) error {
		return setDuration(&c.DrainAckWait, v, true)
	}},
}

func lookupOption(key string) *option {
	for i := range options {
		if options[i].key == key {
			return &options[i]
		}
	}
	return nil
}

// Set sets the option key (a config file key such as "idle_timeout") from
// its textual value, as written in a config file or given as a flag.
func (c *Config) Set(key, value string) error {
	o := lookupOption(key)
	if o == nil {
		return fmt.Errorf("unknown key %q", key)
	}
	if err := o.set(c, value); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func setDomains(c *Config, v string) error {
	var ds []string
	for _, d := range strings.Split(v, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		n, err := normalizeDomain(d)
		if err != nil {
			return err
		}
		for _, old := range ds {
			if old == n {
				return fmt.Errorf("domain %q listed twice", d)
			}
		}
		ds = append(ds, n)
	}
	if len(ds) == 0 {
		return fmt.Errorf("at least one domain is needed")
	}
	c.Domains = ds
	return nil
}

// normalizeDomain returns the normalised form of an XMPP domain.
func normalizeDomain(d string) (string, error) {
	if strings.ContainsAny(d, "@/ \t") {
		return "", fmt.Errorf("%q is not a domain", d)
	}
	j, err := jid.New("", d, "")
	if err != nil {
		return "", fmt.Errorf("%q is not a valid domain: %w", d, err)
	}
	return j.Domainpart(), nil
}

func setAddr(dst *string, v string) error {
	if v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not a host:port address", v)
		}
	}
	*dst = v
	return nil
}

func setInt(dst *int, v string, minimum int) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	if n < minimum {
		return fmt.Errorf("%d is less than %d", n, minimum)
	}
	*dst = n
	return nil
}

// setJIDs parses comma-separated bare JIDs of users.
func setJIDs(dst *[]string, v string) error {
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		j, err := parseUser(a)
		if err != nil {
			return err
		}
		out = append(out, j.String())
	}
	*dst = out
	return nil
}

// setURIs sets a comma-separated list of contact URIs ("" for none).
func setURIs(dst *[]string, v string) error {
	var out []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if err := disco.CheckContactURI(u); err != nil {
			return err
		}
		out = append(out, u)
	}
	*dst = out
	return nil
}

// setHostPorts sets a comma-separated list of host:port ("" for none).
func setHostPorts(dst *[]string, v string) error {
	var out []string
	for _, hp := range strings.Split(v, ",") {
		hp = strings.TrimSpace(hp)
		if hp == "" {
			continue
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			return fmt.Errorf("%q is not host:port", hp)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("%q: bad port", hp)
		}
		out = append(out, hp)
	}
	*dst = out
	return nil
}

func setBool(dst *bool, v string) error {
	switch strings.ToLower(v) {
	case "yes", "true":
		*dst = true
	case "no", "false":
		*dst = false
	default:
		return fmt.Errorf("%q is not yes or no", v)
	}
	return nil
}

// setDays parses a positive duration where "d" counts days (365d), or a
// Go duration (8760h).
// setSize parses a byte count with an optional K, M or G suffix (powers
// of 1024).
func setSize(dst *int64, v string) error {
	mult := int64(1)
	n := strings.ToUpper(strings.TrimSpace(v))
	for _, u := range []struct {
		s string
		m int64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if t, ok := strings.CutSuffix(n, u.s); ok {
			n, mult = t, u.m
			break
		}
	}
	x, err := strconv.ParseInt(n, 10, 64)
	if err != nil || x < 1 {
		return fmt.Errorf("%q is not a size (like 10M)", v)
	}
	*dst = x * mult
	return nil
}

func setDays(dst *time.Duration, v string) error {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 {
			return fmt.Errorf("%q is not a number of days (like 365d)", v)
		}
		*dst = time.Duration(days) * 24 * time.Hour
		return nil
	}
	return setDuration(dst, v, false)
}

// setRate parses COUNT/DURATION (e.g. 30/1h) or none.
func setRate(dst *ratelimit.Limit, v string) error {
	l, err := ratelimit.Parse(v)
	if err != nil {
		return fmt.Errorf("%q is not COUNT/DURATION (like 30/1h) or none", v)
	}
	*dst = l
	return nil
}

// setLimit parses COUNT/DURATION, e.g. 3/1h.
func setLimit(dst *register.Limit, v string) error {
	n, d, ok := strings.Cut(v, "/")
	if !ok {
		return fmt.Errorf("%q is not COUNT/DURATION (like 3/1h)", v)
	}
	var l register.Limit
	if err := setInt(&l.N, strings.TrimSpace(n), 1); err != nil {
		return err
	}
	if err := setDuration(&l.Period, strings.TrimSpace(d), false); err != nil {
		return err
	}
	*dst = l
	return nil
}

func setDuration(dst *time.Duration, v string, zeroOK bool) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 30s or 14m)", v)
	}
	if d < 0 || d == 0 && !zeroOK {
		return fmt.Errorf("%s must be positive", v)
	}
	*dst = d
	return nil
}

// ParseConfig reads a config file from r on top of the defaults. name is
// the file's name for error messages, which have the form "name:line: ...".
//
// The format is line-based: blank lines and lines whose first non-blank
// character is '#' are ignored, every other line is "key = value". Spaces
// around key and value are dropped; a value in double quotes is unquoted
// with Go's rules (to keep spaces or write \n). A key may be set once.
// Unknown keys, lines without '=' and invalid values are errors.
func ParseConfig(name string, r io.Reader) (Config, error) {
	c := Default()
	seen := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Config{}, fmt.Errorf("%s:%d: expected key = value, got %q", name, n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if lookupOption(key) == nil {
			return Config{}, fmt.Errorf("%s:%d: unknown key %q", name, n, key)
		}
		if first, dup := seen[key]; dup {
			return Config{}, fmt.Errorf("%s:%d: %s is already set on line %d", name, n, key, first)
		}
		seen[key] = n
		if strings.HasPrefix(value, `"`) {
			u, err := strconv.Unquote(value)
			if err != nil {
				return Config{}, fmt.Errorf("%s:%d: %s: bad quoted string %s", name, n, key, value)
			}
			value = u
		}
		if err := c.Set(key, value); err != nil {
			return Config{}, fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// LoadConfig reads the config file at path with ParseConfig.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	return ParseConfig(path, f)
}

// setting is a key and value given on the command line.
type setting struct {
	key, value string
}

// loadConfig builds the effective configuration: the defaults, the config
// file (if file is not empty), then the flags in order.
func loadConfig(file string, flags []setting) (Config, error) {
	c := Default()
	if file != "" {
		var err error
		if c, err = LoadConfig(file); err != nil {
			return Config{}, err
		}
	}
	for _, s := range flags {
		if err := c.Set(s.key, s.value); err != nil {
			return Config{}, fmt.Errorf("flag -%s: %w", flagName(s.key), err)
		}
	}
	return c, nil
}

// flagName is the command-line flag for a config key.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// proxyListeners are the listeners proxy_protocol = yes covers.
var proxyListeners = []string{"c2s", "c2s_tls", "http", "https"}

// setProxyProtocol parses no, yes or a list of listener names.
func setProxyProtocol(c *Config, v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "no", "false", "":
		c.ProxyProtocol = nil
		return nil
	case "yes", "true":
		c.ProxyProtocol = append([]string(nil), proxyListeners...)
		return nil
	}
	var out []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(proxyListeners, n) {
			return fmt.Errorf("%q is not one of no, yes, c2s, c2s_tls, http, https (s2s and component take no PROXY header)", n)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	c.ProxyProtocol = out
	return nil
}

// setPrefixes parses comma-separated IP addresses and prefixes.
func setPrefixes(c *Config, v string) error {
	var out []netip.Prefix
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if strings.Contains(a, "/") {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("%q is not an address or prefix", a)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("%q is not an address or prefix", a)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	c.ProxyTrusted = out
	return nil
}

// proxied reports whether the named listener reads PROXY headers.
func (c Config) proxied(listener string) bool { return slices.Contains(c.ProxyProtocol, listener) }
