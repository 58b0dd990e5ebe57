package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

// Roster versions come from one sequence for the whole database, so that
// a version never repeats for a user, also after DeleteRoster (whose
// roster_versions row stays). A user who never had a roster has version
// "0".

// bumpRoster gives the user's roster a new version and returns it.
func bumpRoster(ctx context.Context, tx pgx.Tx, user string) (string, error) {
	var v int64
	err := tx.QueryRow(ctx, `INSERT INTO roster_versions (owner, ver) VALUES ($1, nextval('roster_versions_seq'))
		ON CONFLICT (owner) DO UPDATE SET ver = excluded.ver RETURNING ver`, user).Scan(&v)
	return strconv.FormatInt(v, 10), err
}

const rosterCols = "contact, name, groups, subscription, pending_out, pending_in, approved"

func scanRosterItem(row pgx.Row) (storage.RosterItem, error) {
	var it storage.RosterItem
	var sub string
	err := row.Scan(&it.JID, &it.Name, &it.Groups, &sub, &it.PendingOut, &it.PendingIn, &it.Approved)
	it.Subscription = storage.Subscription(sub)
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, err
}

// Roster implements storage.Rosters.
func (s *Store) Roster(ctx context.Context, user string) ([]storage.RosterItem, string, error) {
	if err := noEmpty(user); err != nil {
		return nil, "", fail(ctx, err, "roster")
	}
	var items []storage.RosterItem
	ver := "0"
	err := s.readTx(ctx, "roster", func(tx pgx.Tx) error {
		var v int64
		switch err := tx.QueryRow(ctx, "SELECT ver FROM roster_versions WHERE owner = $1", user).Scan(&v); {
		case err == nil:
			ver = strconv.FormatInt(v, 10)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+rosterCols+" FROM roster_items WHERE owner = $1 ORDER BY contact COLLATE \"C\"", user)
		if err != nil {
			return err
		}
		items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.RosterItem, error) { return scanRosterItem(r) })
		return err
	})
	return items, ver, err
}

// readTx runs fn in a read-only transaction with one snapshot
// (REPEATABLE READ), for reads that must agree with each other.
func (s *Store) readTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return fail(ctx, err, op)
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("pgstore: %s: %w", op, err)
		}
		return fail(ctx, err, op)
	}
	return nil
}

// RosterItem implements storage.Rosters.
func (s *Store) RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	if err := noEmpty(user, contact); err != nil {
		return storage.RosterItem{}, fail(ctx, err, "roster item")
	}
	if err := s.check(ctx); err != nil {
		return storage.RosterItem{}, fail(ctx, err, "roster item")
	}
	it, err := scanRosterItem(s.pool.QueryRow(ctx, "SELECT "+rosterCols+" FROM roster_items WHERE owner = $1 AND contact = $2", user, contact))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.RosterItem{}, fmt.Errorf("pgstore: roster item %s of %s: %w", contact, user, storage.ErrNotFound)
	}
	if err != nil {
		return storage.RosterItem{}, fail(ctx, err, "roster item")
	}
	return it, nil
}

// PutRosterItem implements storage.Rosters.
func (s *Store) PutRosterItem(ctx context.Context, user string, item storage.RosterItem) (string, error) {
	if err := noEmpty(user, item.JID); err != nil {
		return "", fail(ctx, err, "put roster item")
	}
	groups := item.Groups
	if groups == nil {
		groups = []string{}
	}
	var ver string
	err := s.tx(ctx, "put roster item", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO roster_items (owner, `+rosterCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name, groups = excluded.groups,
			subscription = excluded.subscription, pending_out = excluded.pending_out,
			pending_in = excluded.pending_in, approved = excluded.approved`,
			user, item.JID, item.Name, groups, string(item.Subscription), item.PendingOut, item.PendingIn, item.Approved)
		if err != nil {
			return err
		}
		ver, err = bumpRoster(ctx, tx, user)
		return err
	})
	return ver, err
}

// DeleteRosterItem implements storage.Rosters.
func (s *Store) DeleteRosterItem(ctx context.Context, user, contact string) (string, error) {
	if err := noEmpty(user, contact); err != nil {
		return "", fail(ctx, err, "delete roster item")
	}
	var ver string
	err := s.tx(ctx, "delete roster item", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM roster_items WHERE owner = $1 AND contact = $2", user, contact)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s of %s: %w", contact, user, storage.ErrNotFound)
		}
		ver, err = bumpRoster(ctx, tx, user)
		return err
	})
	return ver, err
}

// DeleteRoster implements storage.Rosters.
func (s *Store) DeleteRoster(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete roster")
	}
	return s.tx(ctx, "delete roster", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM roster_items WHERE owner = $1", user)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = bumpRoster(ctx, tx, user)
		return err
	})
}

// PushOffline implements storage.Offline in one statement: the upsert
// of the user's counter row takes the next ID and counts the message only
// if the user has fewer than limit stored (evaluated on the row's latest
// version under its lock, so concurrent pushes take turns), and the
// insert of the message uses the ID it returned; under the limit nothing
// is returned and nothing inserted.
func (s *Store) PushOffline(ctx context.Context, user string, msg storage.OfflineMessage, limit int) (uint64, error) {
	if err := noEmpty(user); err != nil {
		return 0, fail(ctx, err, "push offline")
	}
	if err := s.check(ctx); err != nil {
		return 0, fail(ctx, err, "push offline")
	}
	stanza := msg.Stanza
	if stanza == nil {
		stanza = []byte{}
	}
	var id int64
	err := s.pool.QueryRow(ctx, `WITH c AS (
			INSERT INTO offline_counters (owner, last, stored) VALUES ($1, 1, 1)
			ON CONFLICT (owner) DO UPDATE SET last = offline_counters.last + 1, stored = offline_counters.stored + 1
			WHERE $4::int8 <= 0 OR offline_counters.stored < $4::int8
			RETURNING last)
		INSERT INTO offline (owner, id, received, stanza) SELECT $1, c.last, $2, $3 FROM c RETURNING id`,
		user, ns(msg.Received), stanza, int64(max(limit, 0))).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("pgstore: push offline for %s: %w", user, storage.ErrQuotaExceeded)
	}
	if err != nil {
		return 0, fail(ctx, err, "push offline")
	}
	return uint64(id), nil
}

// OfflineMessages implements storage.Offline.
func (s *Store) OfflineMessages(ctx context.Context, user string) ([]storage.OfflineMessage, error) {
	if err := noEmpty(user); err != nil {
		return nil, fail(ctx, err, "offline messages")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "offline messages")
	}
	rows, err := s.pool.Query(ctx, "SELECT id, received, stanza FROM offline WHERE owner = $1 ORDER BY id", user)
	if err != nil {
		return nil, fail(ctx, err, "offline messages")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.OfflineMessage, error) {
		var m storage.OfflineMessage
		var id int64
		var at *int64
		err := r.Scan(&id, &at, &m.Stanza)
		m.ID, m.Received = uint64(id), fromNS(at)
		return m, err
	})
	if err != nil {
		return nil, fail(ctx, err, "offline messages")
	}
	return out, nil
}

// DeleteOfflineMessages implements storage.Offline.
func (s *Store) DeleteOfflineMessages(ctx context.Context, user string, ids []uint64) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete offline messages")
	}
	arr := make([]int64, 0, len(ids))
	for _, id := range ids {
		if id <= 1<<63-1 {
			arr = append(arr, int64(id))
		}
	}
	_, err := s.exec(ctx, "delete offline messages", `WITH d AS (DELETE FROM offline WHERE owner = $1 AND id = ANY($2) RETURNING 1)
		UPDATE offline_counters SET stored = stored - (SELECT count(*) FROM d) WHERE owner = $1`, user, arr)
	return err
}

// CountOffline implements storage.Offline.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	if err := noEmpty(user); err != nil {
		return 0, fail(ctx, err, "count offline")
	}
	return s.count(ctx, "count offline", "SELECT count(*) FROM offline WHERE owner = $1", user)
}

// count runs a query that returns one number.
func (s *Store) count(ctx context.Context, op, sql string, args ...any) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, fail(ctx, err, op)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fail(ctx, err, op)
	}
	return int(n), nil
}

// DeleteOffline implements storage.Offline.
func (s *Store) DeleteOffline(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete offline")
	}
	_, err := s.exec(ctx, "delete offline", `WITH d AS (DELETE FROM offline WHERE owner = $1 RETURNING 1)
		UPDATE offline_counters SET stored = stored - (SELECT count(*) FROM d) WHERE owner = $1`, user)
	return err
}
