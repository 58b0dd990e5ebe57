package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's steps, in order: migrations[i] takes the
// schema from version i to version i+1. A step is never changed once
// released; a change of the schema is a new step at the end.
var migrations = []string{
	// 1: the initial schema. Times are int8 Unix nanoseconds (NULL for
	// none); see the package README for the archive's indexes.
	`
CREATE TABLE accounts (
	jid            text PRIMARY KEY,
	domain         text NOT NULL,
	credentials    jsonb NOT NULL DEFAULT '[]',
	created        int8,
	last_login     int8,
	suspended      int8,
	suspend_reason text NOT NULL DEFAULT '',
	approved       int8
);
CREATE INDEX accounts_domain ON accounts (domain, jid);

CREATE SEQUENCE roster_versions_seq;
CREATE TABLE roster_versions (
	owner text PRIMARY KEY,
	ver   int8 NOT NULL
);
CREATE TABLE roster_items (
	owner        text NOT NULL,
	contact      text NOT NULL,
	name         text NOT NULL DEFAULT '',
	groups       text[] NOT NULL DEFAULT '{}',
	subscription text NOT NULL,
	pending_out  bool NOT NULL DEFAULT false,
	pending_in   bool NOT NULL DEFAULT false,
	approved     bool NOT NULL DEFAULT false,
	PRIMARY KEY (owner, contact)
);

CREATE TABLE offline_counters (
	owner text PRIMARY KEY,
	last  int8 NOT NULL
);
CREATE TABLE offline (
	owner    text NOT NULL,
	id       int8 NOT NULL,
	received int8,
	stanza   bytea NOT NULL,
	PRIMARY KEY (owner, id)
);

CREATE TABLE last_activity (
	owner  text PRIMARY KEY,
	at     int8,
	status text NOT NULL DEFAULT ''
);

CREATE TABLE held_names (
	jid   text PRIMARY KEY,
	until int8 NOT NULL
);

CREATE TABLE invites (
	token   text PRIMARY KEY,
	domain  text NOT NULL,
	creator text NOT NULL DEFAULT '',
	created int8,
	expires int8
);

CREATE TABLE rooms (
	jid     text PRIMARY KEY,
	service text NOT NULL,
	room    jsonb NOT NULL
);
CREATE INDEX rooms_service ON rooms (service, jid);

CREATE TABLE private_xml (
	owner text NOT NULL,
	key   text NOT NULL,
	doc   bytea NOT NULL,
	PRIMARY KEY (owner, key)
);

CREATE TABLE blocklist (
	owner text NOT NULL,
	jid   text NOT NULL,
	PRIMARY KEY (owner, jid)
);

CREATE TABLE push_registrations (
	owner   text NOT NULL,
	service text NOT NULL,
	node    text NOT NULL,
	form    bytea,
	PRIMARY KEY (owner, service, node)
);

CREATE TABLE fast_devices (
	owner  text NOT NULL,
	agent  text NOT NULL,
	device jsonb NOT NULL,
	PRIMARY KEY (owner, agent)
);

CREATE TABLE reports (
	id          int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at          int8,
	reporter    text NOT NULL,
	reported    text NOT NULL,
	reason      text NOT NULL DEFAULT '',
	body        text NOT NULL DEFAULT '',
	message_ids text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE uploads (
	id           text PRIMARY KEY,
	owner        text NOT NULL,
	filename     text NOT NULL,
	size         int8 NOT NULL,
	content_type text NOT NULL DEFAULT '',
	created      int8,
	uploaded     bool NOT NULL DEFAULT false
);
CREATE INDEX uploads_owner ON uploads (owner, created, id);
CREATE INDEX uploads_created ON uploads (created);

CREATE SEQUENCE pep_items_seq;
CREATE TABLE pep_nodes (
	owner  text NOT NULL,
	node   text NOT NULL,
	config jsonb NOT NULL,
	PRIMARY KEY (owner, node)
);
CREATE TABLE pep_items (
	owner   text NOT NULL,
	node    text NOT NULL,
	item_id text NOT NULL,
	seq     int8 NOT NULL,
	payload bytea NOT NULL,
	PRIMARY KEY (owner, node, item_id),
	FOREIGN KEY (owner, node) REFERENCES pep_nodes ON DELETE CASCADE
);
CREATE INDEX pep_items_order ON pep_items (owner, node, seq);
CREATE TABLE pep_subscriptions (
	owner text NOT NULL,
	node  text NOT NULL,
	jid   text NOT NULL,
	PRIMARY KEY (owner, node, jid),
	FOREIGN KEY (owner, node) REFERENCES pep_nodes ON DELETE CASCADE
);
CREATE INDEX pep_subscriptions_jid ON pep_subscriptions (owner, jid, node);

CREATE TABLE archive (
	owner         text NOT NULL,
	seq           int8 GENERATED ALWAYS AS IDENTITY,
	id            text NOT NULL,
	at            int8 NOT NULL,
	with_jid      text NOT NULL,
	with_resource text NOT NULL DEFAULT '',
	outgoing      bool NOT NULL,
	stanza        bytea NOT NULL,
	PRIMARY KEY (owner, seq)
);
CREATE UNIQUE INDEX archive_id ON archive (id);
CREATE INDEX archive_with ON archive (owner, with_jid, seq) INCLUDE (with_resource);
CREATE INDEX archive_time ON archive (owner, at, seq);
CREATE INDEX archive_retention ON archive USING brin (at);

CREATE TABLE archive_prefs (
	owner       text PRIMARY KEY,
	default_    text NOT NULL DEFAULT '',
	always      text[] NOT NULL DEFAULT '{}',
	never       text[] NOT NULL DEFAULT '{}'
);
`,

	// 2: offline_counters.stored counts each user's stored offline
	// messages, so that PushOffline checks its limit without counting
	// the rows (one statement instead of a count and an insert).
	`
ALTER TABLE offline_counters ADD COLUMN stored int8 NOT NULL DEFAULT 0;
UPDATE offline_counters c SET stored = (SELECT count(*) FROM offline o WHERE o.owner = c.owner);
`,

	// 3: secrets holds the values every node of a cluster shares
	// (storage.Secrets): the dialback and FAST keys, the ACME account
	// and certificate, leases.
	`
CREATE TABLE secrets (
	name  text PRIMARY KEY,
	value bytea NOT NULL
);
`,
}

// SchemaVersion is the version of the schema this package writes: the
// number of its migration steps.
var SchemaVersion = len(migrations)

// migrationLock is the key of the advisory lock that serialises the
// migrations of nodes starting together on one database.
const migrationLock = 0x7472656666 // "treff"

// migrate brings the schema up to SchemaVersion in one transaction, or
// refuses a schema newer than that.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrateSteps(ctx, pool, migrations)
}

// migrateSteps applies the steps of migrations beyond the database's
// version (tests give a prefix of migrations, to make an old schema).
func migrateSteps(ctx context.Context, pool *pgxpool.Pool, migrations []string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL)"); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("the database's schema is version %d, newer than this program knows (%d): run a newer Treff on it", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("schema step %d: %w", i+1, err)
			}
		}
		if v < len(migrations) {
			if _, err := tx.Exec(ctx, "UPDATE schema_version SET version = $1", len(migrations)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	return nil
}
