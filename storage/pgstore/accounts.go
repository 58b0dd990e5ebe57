package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

const accountCols = "jid, credentials, created, last_login, suspended, suspend_reason, approved"

// scanAccount reads one row of accountCols.
func scanAccount(row pgx.Row) (storage.Account, error) {
	var a storage.Account
	var creds []byte
	var created, last, susp, appr *int64
	if err := row.Scan(&a.JID, &creds, &created, &last, &susp, &a.SuspendReason, &appr); err != nil {
		return a, err
	}
	if err := json.Unmarshal(creds, &a.Credentials); err != nil {
		return a, fmt.Errorf("credentials of %s: %w", a.JID, err)
	}
	if len(a.Credentials) == 0 {
		a.Credentials = nil
	}
	a.Created, a.LastLogin, a.Suspended, a.Approved = fromNS(created), fromNS(last), fromNS(susp), fromNS(appr)
	return a, nil
}

// accountArgs returns the values of accountCols for a.
func accountArgs(a storage.Account) ([]any, error) {
	creds := a.Credentials
	if creds == nil {
		creds = []storage.Credential{}
	}
	b, err := json.Marshal(creds)
	if err != nil {
		return nil, err
	}
	return []any{a.JID, b, ns(a.Created), ns(a.LastLogin), ns(a.Suspended), a.SuspendReason, ns(a.Approved)}, nil
}

// CreateAccount implements storage.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) error {
	if err := noEmpty(a.JID); err != nil {
		return fail(ctx, err, "create account")
	}
	args, err := accountArgs(a)
	if err != nil {
		return fail(ctx, err, "create account")
	}
	_, err = s.exec(ctx, "create account", "INSERT INTO accounts (domain, "+accountCols+") VALUES ($8, $1, $2, $3, $4, $5, $6, $7)", append(args, domainOf(a.JID))...)
	if err != nil && isUnique(err) {
		return fmt.Errorf("pgstore: create account %s: %w", a.JID, storage.ErrExists)
	}
	return err
}

// Account implements storage.Accounts.
func (s *Store) Account(ctx context.Context, jid string) (storage.Account, error) {
	if err := noEmpty(jid); err != nil {
		return storage.Account{}, fail(ctx, err, "account")
	}
	if err := s.check(ctx); err != nil {
		return storage.Account{}, fail(ctx, err, "account")
	}
	a, err := scanAccount(s.pool.QueryRow(ctx, "SELECT "+accountCols+" FROM accounts WHERE jid = $1", jid))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("pgstore: account %s: %w", jid, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Account{}, fail(ctx, err, "account")
	}
	return a, nil
}

// UpdateAccount implements storage.Accounts.
func (s *Store) UpdateAccount(ctx context.Context, a storage.Account) error {
	if err := noEmpty(a.JID); err != nil {
		return fail(ctx, err, "update account")
	}
	args, err := accountArgs(a)
	if err != nil {
		return fail(ctx, err, "update account")
	}
	n, err := s.exec(ctx, "update account", `UPDATE accounts SET credentials = $2, created = $3, last_login = $4,
		suspended = $5, suspend_reason = $6, approved = $7 WHERE jid = $1`, args...)
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: update account %s: %w", a.JID, storage.ErrNotFound)
	}
	return err
}

// DeleteAccount implements storage.Accounts.
func (s *Store) DeleteAccount(ctx context.Context, jid string) error {
	if err := noEmpty(jid); err != nil {
		return fail(ctx, err, "delete account")
	}
	n, err := s.exec(ctx, "delete account", "DELETE FROM accounts WHERE jid = $1", jid)
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: delete account %s: %w", jid, storage.ErrNotFound)
	}
	return err
}

// ListAccounts implements storage.Accounts.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]storage.Account, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "list accounts")
	}
	var rows pgx.Rows
	var err error
	if domain == "" {
		rows, err = s.pool.Query(ctx, "SELECT "+accountCols+" FROM accounts ORDER BY jid COLLATE \"C\"")
	} else {
		rows, err = s.pool.Query(ctx, "SELECT "+accountCols+" FROM accounts WHERE domain = $1 ORDER BY jid COLLATE \"C\"", domain)
	}
	if err != nil {
		return nil, fail(ctx, err, "list accounts")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, fail(ctx, err, "list accounts")
	}
	return out, nil
}

// SetLastLogin implements storage.Accounts.
func (s *Store) SetLastLogin(ctx context.Context, jid string, t time.Time) error {
	if err := noEmpty(jid); err != nil {
		return fail(ctx, err, "set last login")
	}
	n, err := s.exec(ctx, "set last login", "UPDATE accounts SET last_login = $2 WHERE jid = $1", jid, ns(storage.Day(t)))
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: set last login %s: %w", jid, storage.ErrNotFound)
	}
	return err
}

// SetLastActivity implements storage.LastActivity.
func (s *Store) SetLastActivity(ctx context.Context, user string, t time.Time, status string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "set last activity")
	}
	_, err := s.exec(ctx, "set last activity", `INSERT INTO last_activity (owner, at, status) VALUES ($1, $2, $3)
		ON CONFLICT (owner) DO UPDATE SET at = excluded.at, status = excluded.status`, user, ns(t), status)
	return err
}

// LastActivity implements storage.LastActivity.
func (s *Store) LastActivity(ctx context.Context, user string) (time.Time, string, error) {
	if err := noEmpty(user); err != nil {
		return time.Time{}, "", fail(ctx, err, "last activity")
	}
	if err := s.check(ctx); err != nil {
		return time.Time{}, "", fail(ctx, err, "last activity")
	}
	var at *int64
	var status string
	err := s.pool.QueryRow(ctx, "SELECT at, status FROM last_activity WHERE owner = $1", user).Scan(&at, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, "", fmt.Errorf("pgstore: last activity %s: %w", user, storage.ErrNotFound)
	}
	if err != nil {
		return time.Time{}, "", fail(ctx, err, "last activity")
	}
	return fromNS(at), status, nil
}

// DeleteLastActivity implements storage.LastActivity.
func (s *Store) DeleteLastActivity(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete last activity")
	}
	_, err := s.exec(ctx, "delete last activity", "DELETE FROM last_activity WHERE owner = $1", user)
	return err
}

// HoldName implements storage.HeldNames. It forgets holds that have
// passed.
func (s *Store) HoldName(ctx context.Context, jid string, until time.Time) error {
	if err := noEmpty(jid); err != nil {
		return fail(ctx, err, "hold name")
	}
	return s.tx(ctx, "hold name", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM held_names WHERE until < $1", time.Now().UnixNano()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO held_names (jid, until) VALUES ($1, $2)
			ON CONFLICT (jid) DO UPDATE SET until = excluded.until`, jid, until.UnixNano())
		return err
	})
}

// NameHeldUntil implements storage.HeldNames.
func (s *Store) NameHeldUntil(ctx context.Context, jid string) (time.Time, error) {
	if err := noEmpty(jid); err != nil {
		return time.Time{}, fail(ctx, err, "name held")
	}
	if err := s.check(ctx); err != nil {
		return time.Time{}, fail(ctx, err, "name held")
	}
	var until int64
	err := s.pool.QueryRow(ctx, "SELECT until FROM held_names WHERE jid = $1", jid).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fail(ctx, err, "name held")
	}
	t := time.Unix(0, until).UTC()
	if !t.After(time.Now()) {
		return time.Time{}, nil
	}
	return t, nil
}

const inviteCols = "token, domain, creator, created, expires"

func scanInvite(row pgx.Row) (storage.Invite, error) {
	var inv storage.Invite
	var c, e *int64
	err := row.Scan(&inv.Token, &inv.Domain, &inv.Creator, &c, &e)
	inv.Created, inv.Expires = fromNS(c), fromNS(e)
	return inv, err
}

// CreateInvite implements storage.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv storage.Invite) error {
	if inv.Token == "" || inv.Domain == "" {
		return fail(ctx, errors.New("empty token or domain"), "create invite")
	}
	_, err := s.exec(ctx, "create invite", "INSERT INTO invites ("+inviteCols+") VALUES ($1, $2, $3, $4, $5)",
		inv.Token, inv.Domain, inv.Creator, ns(inv.Created), ns(inv.Expires))
	if err != nil && isUnique(err) {
		return fmt.Errorf("pgstore: create invite: %w", storage.ErrExists)
	}
	return err
}

// Invite implements storage.Invites.
func (s *Store) Invite(ctx context.Context, token string) (storage.Invite, error) {
	if err := s.check(ctx); err != nil {
		return storage.Invite{}, fail(ctx, err, "invite")
	}
	inv, err := scanInvite(s.pool.QueryRow(ctx, "SELECT "+inviteCols+" FROM invites WHERE token = $1 AND expires > $2", token, time.Now().UnixNano()))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Invite{}, fmt.Errorf("pgstore: invite: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Invite{}, fail(ctx, err, "invite")
	}
	return inv, nil
}

// UseInvite implements storage.Invites.
func (s *Store) UseInvite(ctx context.Context, token string) (storage.Invite, error) {
	if err := s.check(ctx); err != nil {
		return storage.Invite{}, fail(ctx, err, "use invite")
	}
	inv, err := scanInvite(s.pool.QueryRow(ctx, "DELETE FROM invites WHERE token = $1 RETURNING "+inviteCols, token))
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !inv.Expires.After(time.Now()) {
		return storage.Invite{}, fmt.Errorf("pgstore: use invite: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Invite{}, fail(ctx, err, "use invite")
	}
	return inv, nil
}

// ListInvites implements storage.Invites.
func (s *Store) ListInvites(ctx context.Context) ([]storage.Invite, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "list invites")
	}
	rows, err := s.pool.Query(ctx, "SELECT "+inviteCols+" FROM invites WHERE expires > $1 ORDER BY created, token COLLATE \"C\"", time.Now().UnixNano())
	if err != nil {
		return nil, fail(ctx, err, "list invites")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Invite, error) { return scanInvite(r) })
	if err != nil {
		return nil, fail(ctx, err, "list invites")
	}
	return out, nil
}

// DeleteInvite implements storage.Invites.
func (s *Store) DeleteInvite(ctx context.Context, token string) error {
	_, err := s.exec(ctx, "delete invite", "DELETE FROM invites WHERE token = $1", token)
	return err
}
