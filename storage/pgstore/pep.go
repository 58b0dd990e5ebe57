package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

// A PEP node's items are ordered by seq, taken from one sequence when an
// item is published (a replaced item takes a new one: it becomes the
// newest).

// pepConfig marshals cfg for the config column.
func pepConfig(cfg storage.PEPNodeConfig) ([]byte, error) { return json.Marshal(cfg) }

// lockNode locks the node's row for the rest of tx, or returns
// ErrNotFound.
func lockNode(ctx context.Context, tx pgx.Tx, owner, node string) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM pep_nodes WHERE owner = $1 AND node = $2 FOR UPDATE", owner, node).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("node %q of %s: %w", node, owner, storage.ErrNotFound)
	}
	return err
}

// nodeExists returns ErrNotFound if the node does not exist.
func nodeExists(ctx context.Context, q pgx.Tx, owner, node string) error {
	var one int
	err := q.QueryRow(ctx, "SELECT 1 FROM pep_nodes WHERE owner = $1 AND node = $2", owner, node).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("node %q of %s: %w", node, owner, storage.ErrNotFound)
	}
	return err
}

// CreatePEPNode implements storage.PEP.
func (s *Store) CreatePEPNode(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "create PEP node")
	}
	doc, err := pepConfig(cfg)
	if err != nil {
		return fail(ctx, err, "create PEP node")
	}
	_, err = s.exec(ctx, "create PEP node", "INSERT INTO pep_nodes (owner, node, config) VALUES ($1, $2, $3)", owner, node, doc)
	if err != nil && isUnique(err) {
		return fmt.Errorf("pgstore: create PEP node %q of %s: %w", node, owner, storage.ErrExists)
	}
	return err
}

// PEPNodeConfig implements storage.PEP.
func (s *Store) PEPNodeConfig(ctx context.Context, owner, node string) (storage.PEPNodeConfig, error) {
	var cfg storage.PEPNodeConfig
	if err := noEmpty(owner); err != nil {
		return cfg, fail(ctx, err, "PEP node config")
	}
	if err := s.check(ctx); err != nil {
		return cfg, fail(ctx, err, "PEP node config")
	}
	var doc []byte
	err := s.pool.QueryRow(ctx, "SELECT config FROM pep_nodes WHERE owner = $1 AND node = $2", owner, node).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return cfg, fmt.Errorf("pgstore: PEP node %q of %s: %w", node, owner, storage.ErrNotFound)
	}
	if err == nil {
		err = json.Unmarshal(doc, &cfg)
	}
	if err != nil {
		return storage.PEPNodeConfig{}, fail(ctx, err, "PEP node config")
	}
	return cfg, nil
}

// SetPEPNodeConfig implements storage.PEP.
func (s *Store) SetPEPNodeConfig(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "set PEP node config")
	}
	doc, err := pepConfig(cfg)
	if err != nil {
		return fail(ctx, err, "set PEP node config")
	}
	n, err := s.exec(ctx, "set PEP node config", "UPDATE pep_nodes SET config = $3 WHERE owner = $1 AND node = $2", owner, node, doc)
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: set PEP node config %q of %s: %w", node, owner, storage.ErrNotFound)
	}
	return err
}

// DeletePEPNode implements storage.PEP; its items and subscriptions go
// with it (ON DELETE CASCADE).
func (s *Store) DeletePEPNode(ctx context.Context, owner, node string) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "delete PEP node")
	}
	n, err := s.exec(ctx, "delete PEP node", "DELETE FROM pep_nodes WHERE owner = $1 AND node = $2", owner, node)
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: delete PEP node %q of %s: %w", node, owner, storage.ErrNotFound)
	}
	return err
}

// PEPNodes implements storage.PEP.
func (s *Store) PEPNodes(ctx context.Context, owner string) ([]string, error) {
	if err := noEmpty(owner); err != nil {
		return nil, fail(ctx, err, "PEP nodes")
	}
	return s.strings(ctx, "PEP nodes", "SELECT node FROM pep_nodes WHERE owner = $1 ORDER BY node COLLATE \"C\"", owner)
}

// PublishPEPItem implements storage.PEP.
func (s *Store) PublishPEPItem(ctx context.Context, owner, node string, it storage.PEPItem, max int) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "publish PEP item")
	}
	payload := it.Payload
	if payload == nil {
		payload = []byte{}
	}
	return s.tx(ctx, "publish PEP item", func(tx pgx.Tx) error {
		if err := lockNode(ctx, tx, owner, node); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pep_items (owner, node, item_id, seq, payload) VALUES ($1, $2, $3, nextval('pep_items_seq'), $4)
			ON CONFLICT (owner, node, item_id) DO UPDATE SET seq = excluded.seq, payload = excluded.payload`,
			owner, node, it.ID, payload); err != nil {
			return err
		}
		if max > 0 {
			_, err := tx.Exec(ctx, `DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND seq < (
				SELECT min(seq) FROM (SELECT seq FROM pep_items WHERE owner = $1 AND node = $2 ORDER BY seq DESC LIMIT $3) newest)`,
				owner, node, max)
			return err
		}
		return nil
	})
}

// PEPItems implements storage.PEP.
func (s *Store) PEPItems(ctx context.Context, owner, node string, ids []string, last int) ([]storage.PEPItem, error) {
	if err := noEmpty(owner); err != nil {
		return nil, fail(ctx, err, "PEP items")
	}
	var out []storage.PEPItem
	err := s.readTx(ctx, "PEP items", func(tx pgx.Tx) error {
		if err := nodeExists(ctx, tx, owner, node); err != nil {
			return err
		}
		var rows pgx.Rows
		var err error
		switch {
		case len(ids) > 0:
			rows, err = tx.Query(ctx, "SELECT item_id, payload FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = ANY($3) ORDER BY seq", owner, node, ids)
		case last > 0:
			rows, err = tx.Query(ctx, `SELECT item_id, payload FROM (SELECT item_id, payload, seq FROM pep_items
				WHERE owner = $1 AND node = $2 ORDER BY seq DESC LIMIT $3) newest ORDER BY seq`, owner, node, last)
		default:
			rows, err = tx.Query(ctx, "SELECT item_id, payload FROM pep_items WHERE owner = $1 AND node = $2 ORDER BY seq", owner, node)
		}
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.PEPItem, error) {
			var it storage.PEPItem
			err := r.Scan(&it.ID, &it.Payload)
			return it, err
		})
		return err
	})
	return out, err
}

// RetractPEPItem implements storage.PEP.
func (s *Store) RetractPEPItem(ctx context.Context, owner, node, id string) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "retract PEP item")
	}
	return s.tx(ctx, "retract PEP item", func(tx pgx.Tx) error {
		if err := lockNode(ctx, tx, owner, node); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3", owner, node, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("item %q: %w", id, storage.ErrNotFound)
		}
		return err
	})
}

// PurgePEPNode implements storage.PEP.
func (s *Store) PurgePEPNode(ctx context.Context, owner, node string) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "purge PEP node")
	}
	return s.tx(ctx, "purge PEP node", func(tx pgx.Tx) error {
		if err := lockNode(ctx, tx, owner, node); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM pep_items WHERE owner = $1 AND node = $2", owner, node)
		return err
	})
}

// DeletePEPOwner implements storage.PEP.
func (s *Store) DeletePEPOwner(ctx context.Context, owner string) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "delete PEP owner")
	}
	_, err := s.exec(ctx, "delete PEP owner", "DELETE FROM pep_nodes WHERE owner = $1", owner)
	return err
}

// SubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) SubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	if err := noEmpty(owner, jid); err != nil {
		return fail(ctx, err, "subscribe PEP node")
	}
	return s.tx(ctx, "subscribe PEP node", func(tx pgx.Tx) error {
		if err := lockNode(ctx, tx, owner, node); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO pep_subscriptions (owner, node, jid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", owner, node, jid)
		return err
	})
}

// UnsubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) UnsubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	if err := noEmpty(owner, jid); err != nil {
		return fail(ctx, err, "unsubscribe PEP node")
	}
	return s.tx(ctx, "unsubscribe PEP node", func(tx pgx.Tx) error {
		if err := lockNode(ctx, tx, owner, node); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "DELETE FROM pep_subscriptions WHERE owner = $1 AND node = $2 AND jid = $3", owner, node, jid)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("subscription of %s: %w", jid, storage.ErrNotFound)
		}
		return err
	})
}

// PEPSubscribers implements storage.PEPSubscriptions.
func (s *Store) PEPSubscribers(ctx context.Context, owner, node string) ([]string, error) {
	if err := noEmpty(owner); err != nil {
		return nil, fail(ctx, err, "PEP subscribers")
	}
	var out []string
	err := s.readTx(ctx, "PEP subscribers", func(tx pgx.Tx) error {
		if err := nodeExists(ctx, tx, owner, node); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT jid FROM pep_subscriptions WHERE owner = $1 AND node = $2 ORDER BY jid COLLATE \"C\"", owner, node)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return out, err
}

// PEPSubscriptionsOf implements storage.PEPSubscriptions.
func (s *Store) PEPSubscriptionsOf(ctx context.Context, owner, jid string) ([]string, error) {
	if err := noEmpty(owner, jid); err != nil {
		return nil, fail(ctx, err, "PEP subscriptions")
	}
	return s.strings(ctx, "PEP subscriptions", "SELECT node FROM pep_subscriptions WHERE owner = $1 AND jid = $2 ORDER BY node COLLATE \"C\"", owner, jid)
}
