package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

// PutRoom implements storage.Rooms. A room is kept as one JSON document:
// it is read and written whole.
func (s *Store) PutRoom(ctx context.Context, r storage.Room) error {
	if err := noEmpty(r.JID); err != nil {
		return fail(ctx, err, "put room")
	}
	for j := range r.Affiliations {
		if j == "" {
			return fail(ctx, errEmptyJID, "put room")
		}
	}
	doc, err := json.Marshal(r)
	if err != nil {
		return fail(ctx, err, "put room")
	}
	_, err = s.exec(ctx, "put room", `INSERT INTO rooms (jid, service, room) VALUES ($1, $2, $3)
		ON CONFLICT (jid) DO UPDATE SET room = excluded.room`, r.JID, domainOf(r.JID), doc)
	return err
}

func scanRoom(row pgx.Row) (storage.Room, error) {
	var doc []byte
	var r storage.Room
	if err := row.Scan(&doc); err != nil {
		return r, err
	}
	if err := json.Unmarshal(doc, &r); err != nil {
		return r, err
	}
	r.Created, r.KeepUntil = utc(r.Created), utc(r.KeepUntil)
	for i := range r.History {
		r.History[i].At = utc(r.History[i].At)
	}
	return r, nil
}

// utc returns t in UTC, the zero time as it is.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// Room implements storage.Rooms.
func (s *Store) Room(ctx context.Context, jid string) (storage.Room, error) {
	if err := noEmpty(jid); err != nil {
		return storage.Room{}, fail(ctx, err, "room")
	}
	if err := s.check(ctx); err != nil {
		return storage.Room{}, fail(ctx, err, "room")
	}
	r, err := scanRoom(s.pool.QueryRow(ctx, "SELECT room FROM rooms WHERE jid = $1", jid))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Room{}, fmt.Errorf("pgstore: room %s: %w", jid, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Room{}, fail(ctx, err, "room")
	}
	return r, nil
}

// DeleteRoom implements storage.Rooms.
func (s *Store) DeleteRoom(ctx context.Context, jid string) error {
	if err := noEmpty(jid); err != nil {
		return fail(ctx, err, "delete room")
	}
	_, err := s.exec(ctx, "delete room", "DELETE FROM rooms WHERE jid = $1", jid)
	return err
}

// ListRooms implements storage.Rooms.
func (s *Store) ListRooms(ctx context.Context, service string) ([]storage.Room, error) {
	if err := noEmpty(service); err != nil {
		return nil, fail(ctx, err, "list rooms")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "list rooms")
	}
	rows, err := s.pool.Query(ctx, "SELECT room FROM rooms WHERE service = $1 ORDER BY jid COLLATE \"C\"", service)
	if err != nil {
		return nil, fail(ctx, err, "list rooms")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Room, error) { return scanRoom(r) })
	if err != nil {
		return nil, fail(ctx, err, "list rooms")
	}
	return out, nil
}

// strings runs a query that returns one text column.
func (s *Store) strings(ctx context.Context, op, sql string, args ...any) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, op)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fail(ctx, err, op)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fail(ctx, err, op)
	}
	return out, nil
}

// PrivateXML implements storage.PrivateXML.
func (s *Store) PrivateXML(ctx context.Context, user, key string) ([]byte, error) {
	if err := noEmpty(user, key); err != nil {
		return nil, fail(ctx, err, "private XML")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "private XML")
	}
	var doc []byte
	err := s.pool.QueryRow(ctx, "SELECT doc FROM private_xml WHERE owner = $1 AND key = $2", user, key).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstore: private XML %s of %s: %w", key, user, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fail(ctx, err, "private XML")
	}
	if doc == nil {
		doc = []byte{}
	}
	return doc, nil
}

// PutPrivateXML implements storage.PrivateXML.
func (s *Store) PutPrivateXML(ctx context.Context, user, key string, doc []byte) error {
	if err := noEmpty(user, key); err != nil {
		return fail(ctx, err, "put private XML")
	}
	if doc == nil {
		doc = []byte{}
	}
	_, err := s.exec(ctx, "put private XML", `INSERT INTO private_xml (owner, key, doc) VALUES ($1, $2, $3)
		ON CONFLICT (owner, key) DO UPDATE SET doc = excluded.doc`, user, key, doc)
	return err
}

// DeletePrivateXML implements storage.PrivateXML.
func (s *Store) DeletePrivateXML(ctx context.Context, user, key string) error {
	if err := noEmpty(user, key); err != nil {
		return fail(ctx, err, "delete private XML")
	}
	_, err := s.exec(ctx, "delete private XML", "DELETE FROM private_xml WHERE owner = $1 AND key = $2", user, key)
	return err
}

// DeleteAllPrivateXML implements storage.PrivateXML.
func (s *Store) DeleteAllPrivateXML(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete private XML")
	}
	_, err := s.exec(ctx, "delete private XML", "DELETE FROM private_xml WHERE owner = $1", user)
	return err
}

// PrivateXMLKeys implements storage.PrivateXMLKeys.
func (s *Store) PrivateXMLKeys(ctx context.Context, user string) ([]string, error) {
	if err := noEmpty(user); err != nil {
		return nil, fail(ctx, err, "private XML keys")
	}
	return s.strings(ctx, "private XML keys", "SELECT key FROM private_xml WHERE owner = $1 ORDER BY key COLLATE \"C\"", user)
}

// Blocklist implements storage.Blocklists.
func (s *Store) Blocklist(ctx context.Context, user string) ([]string, error) {
	if err := noEmpty(user); err != nil {
		return nil, fail(ctx, err, "block list")
	}
	return s.strings(ctx, "block list", "SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid COLLATE \"C\"", user)
}

// Block implements storage.Blocklists.
func (s *Store) Block(ctx context.Context, user string, jids []string) error {
	if err := noEmpty(append([]string{user}, jids...)...); err != nil {
		return fail(ctx, err, "block")
	}
	_, err := s.exec(ctx, "block", `INSERT INTO blocklist (owner, jid) SELECT $1, unnest($2::text[])
		ON CONFLICT DO NOTHING`, user, jids)
	return err
}

// Unblock implements storage.Blocklists.
func (s *Store) Unblock(ctx context.Context, user string, jids []string) error {
	if err := noEmpty(append([]string{user}, jids...)...); err != nil {
		return fail(ctx, err, "unblock")
	}
	_, err := s.exec(ctx, "unblock", "DELETE FROM blocklist WHERE owner = $1 AND jid = ANY($2)", user, jids)
	return err
}

// UnblockAll implements storage.Blocklists.
func (s *Store) UnblockAll(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "unblock all")
	}
	_, err := s.exec(ctx, "unblock all", "DELETE FROM blocklist WHERE owner = $1", user)
	return err
}

// IsBlocked implements storage.Blocklists.
func (s *Store) IsBlocked(ctx context.Context, user, jid string) (bool, error) {
	if err := noEmpty(user, jid); err != nil {
		return false, fail(ctx, err, "is blocked")
	}
	n, err := s.count(ctx, "is blocked", "SELECT count(*) FROM blocklist WHERE owner = $1 AND jid = $2", user, jid)
	return n > 0, err
}

// PushRegistrations implements storage.PushRegistrations.
func (s *Store) PushRegistrations(ctx context.Context, user string) ([]storage.PushRegistration, error) {
	if err := noEmpty(user); err != nil {
		return nil, fail(ctx, err, "push registrations")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "push registrations")
	}
	rows, err := s.pool.Query(ctx, `SELECT service, node, form FROM push_registrations WHERE owner = $1
		ORDER BY service COLLATE "C", node COLLATE "C"`, user)
	if err != nil {
		return nil, fail(ctx, err, "push registrations")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.PushRegistration, error) {
		var p storage.PushRegistration
		err := r.Scan(&p.Service, &p.Node, &p.Form)
		return p, err
	})
	if err != nil {
		return nil, fail(ctx, err, "push registrations")
	}
	return out, nil
}

// PutPushRegistration implements storage.PushRegistrations.
func (s *Store) PutPushRegistration(ctx context.Context, user string, r storage.PushRegistration) error {
	if err := noEmpty(user, r.Service); err != nil {
		return fail(ctx, err, "put push registration")
	}
	_, err := s.exec(ctx, "put push registration", `INSERT INTO push_registrations (owner, service, node, form) VALUES ($1, $2, $3, $4)
		ON CONFLICT (owner, service, node) DO UPDATE SET form = excluded.form`, user, r.Service, r.Node, r.Form)
	return err
}

// DeletePushRegistrations implements storage.PushRegistrations.
func (s *Store) DeletePushRegistrations(ctx context.Context, user, service, node string) error {
	if err := noEmpty(user, service); err != nil {
		return fail(ctx, err, "delete push registrations")
	}
	var err error
	if node == "" {
		_, err = s.exec(ctx, "delete push registrations", "DELETE FROM push_registrations WHERE owner = $1 AND service = $2", user, service)
	} else {
		_, err = s.exec(ctx, "delete push registrations", "DELETE FROM push_registrations WHERE owner = $1 AND service = $2 AND node = $3", user, service, node)
	}
	return err
}

// DeleteAllPushRegistrations implements storage.PushRegistrations.
func (s *Store) DeleteAllPushRegistrations(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete push registrations")
	}
	_, err := s.exec(ctx, "delete push registrations", "DELETE FROM push_registrations WHERE owner = $1", user)
	return err
}

func scanFast(row pgx.Row) (storage.FastDevice, error) {
	var doc []byte
	var d storage.FastDevice
	if err := row.Scan(&doc); err != nil {
		return d, err
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return d, err
	}
	d.LastUsed = utc(d.LastUsed)
	for _, t := range []*storage.FastToken{&d.Current, &d.Next} {
		t.Issued, t.Expires = utc(t.Issued), utc(t.Expires)
	}
	return d.Clone(), nil
}

// FastDevice implements storage.FastTokens.
func (s *Store) FastDevice(ctx context.Context, user, agent string) (storage.FastDevice, error) {
	if err := noEmpty(user, agent); err != nil {
		return storage.FastDevice{}, fail(ctx, err, "FAST device")
	}
	if err := s.check(ctx); err != nil {
		return storage.FastDevice{}, fail(ctx, err, "FAST device")
	}
	d, err := scanFast(s.pool.QueryRow(ctx, "SELECT device FROM fast_devices WHERE owner = $1 AND agent = $2", user, agent))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("pgstore: FAST device %s of %s: %w", agent, user, storage.ErrNotFound)
	}
	if err != nil {
		return storage.FastDevice{}, fail(ctx, err, "FAST device")
	}
	return d, nil
}

// PutFastDevice implements storage.FastTokens.
func (s *Store) PutFastDevice(ctx context.Context, user string, d storage.FastDevice) error {
	if err := noEmpty(user, d.Agent); err != nil {
		return fail(ctx, err, "put FAST device")
	}
	doc, err := json.Marshal(d)
	if err != nil {
		return fail(ctx, err, "put FAST device")
	}
	_, err = s.exec(ctx, "put FAST device", `INSERT INTO fast_devices (owner, agent, device) VALUES ($1, $2, $3)
		ON CONFLICT (owner, agent) DO UPDATE SET device = excluded.device`, user, d.Agent, doc)
	return err
}

// DeleteFastDevice implements storage.FastTokens.
func (s *Store) DeleteFastDevice(ctx context.Context, user, agent string) error {
	if err := noEmpty(user, agent); err != nil {
		return fail(ctx, err, "delete FAST device")
	}
	_, err := s.exec(ctx, "delete FAST device", "DELETE FROM fast_devices WHERE owner = $1 AND agent = $2", user, agent)
	return err
}

// FastDevices implements storage.FastTokens.
func (s *Store) FastDevices(ctx context.Context, user string) ([]storage.FastDevice, error) {
	if err := noEmpty(user); err != nil {
		return nil, fail(ctx, err, "FAST devices")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "FAST devices")
	}
	rows, err := s.pool.Query(ctx, "SELECT device FROM fast_devices WHERE owner = $1 ORDER BY agent COLLATE \"C\"", user)
	if err != nil {
		return nil, fail(ctx, err, "FAST devices")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.FastDevice, error) { return scanFast(r) })
	if err != nil {
		return nil, fail(ctx, err, "FAST devices")
	}
	return out, nil
}

// DeleteFastDevices implements storage.FastTokens.
func (s *Store) DeleteFastDevices(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete FAST devices")
	}
	_, err := s.exec(ctx, "delete FAST devices", "DELETE FROM fast_devices WHERE owner = $1", user)
	return err
}

// reportID formats a report's row ID so that IDs sort like arrival.
func reportID(id int64) string { return fmt.Sprintf("%020d", id) }

// AddReport implements storage.Reports.
func (s *Store) AddReport(ctx context.Context, r storage.Report) (string, error) {
	if err := noEmpty(r.Reporter, r.Reported); err != nil {
		return "", fail(ctx, err, "add report")
	}
	if err := s.check(ctx); err != nil {
		return "", fail(ctx, err, "add report")
	}
	ids := r.MessageIDs
	if ids == nil {
		ids = []string{}
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO reports (at, reporter, reported, reason, body, message_ids)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, ns(r.Time), r.Reporter, r.Reported, r.Reason, r.Text, ids).Scan(&id)
	if err != nil {
		return "", fail(ctx, err, "add report")
	}
	return reportID(id), nil
}

// ListReports implements storage.Reports.
func (s *Store) ListReports(ctx context.Context) ([]storage.Report, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "list reports")
	}
	rows, err := s.pool.Query(ctx, "SELECT id, at, reporter, reported, reason, body, message_ids FROM reports ORDER BY id")
	if err != nil {
		return nil, fail(ctx, err, "list reports")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Report, error) {
		var r storage.Report
		var id int64
		var at *int64
		err := row.Scan(&id, &at, &r.Reporter, &r.Reported, &r.Reason, &r.Text, &r.MessageIDs)
		r.ID, r.Time = reportID(id), fromNS(at)
		if len(r.MessageIDs) == 0 {
			r.MessageIDs = nil
		}
		return r, err
	})
	if err != nil {
		return nil, fail(ctx, err, "list reports")
	}
	return out, nil
}

// DeleteReport implements storage.Reports.
func (s *Store) DeleteReport(ctx context.Context, id string) error {
	n, perr := strconv.ParseInt(id, 10, 64)
	if perr != nil || reportID(n) != id {
		if err := s.check(ctx); err != nil {
			return fail(ctx, err, "delete report")
		}
		return fmt.Errorf("pgstore: delete report %q: %w", id, storage.ErrNotFound)
	}
	k, err := s.exec(ctx, "delete report", "DELETE FROM reports WHERE id = $1", n)
	if err == nil && k == 0 {
		err = fmt.Errorf("pgstore: delete report %q: %w", id, storage.ErrNotFound)
	}
	return err
}

const uploadCols = "id, owner, filename, size, content_type, created, uploaded"

func scanUpload(row pgx.Row) (storage.Upload, error) {
	var u storage.Upload
	var c *int64
	err := row.Scan(&u.ID, &u.Owner, &u.Filename, &u.Size, &u.ContentType, &c, &u.Uploaded)
	u.Created = fromNS(c)
	return u, err
}

func (s *Store) uploads(ctx context.Context, op, sql string, args ...any) ([]storage.Upload, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, op)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fail(ctx, err, op)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Upload, error) { return scanUpload(r) })
	if err != nil {
		return nil, fail(ctx, err, op)
	}
	return out, nil
}

// CreateUpload implements storage.Uploads. The owner's advisory lock
// makes the quota check and the insert atomic.
func (s *Store) CreateUpload(ctx context.Context, u storage.Upload, quota int64) error {
	if err := noEmpty(u.Owner); err != nil {
		return fail(ctx, err, "create upload")
	}
	if u.ID == "" {
		return fail(ctx, errors.New("empty ID"), "create upload")
	}
	err := s.tx(ctx, "create upload", func(tx pgx.Tx) error {
		if err := lockKey(ctx, tx, "upload "+u.Owner); err != nil {
			return err
		}
		if quota > 0 {
			var used int64
			if err := tx.QueryRow(ctx, "SELECT coalesce(sum(size), 0) FROM uploads WHERE owner = $1", u.Owner).Scan(&used); err != nil {
				return err
			}
			if used+u.Size > quota {
				return storage.ErrQuotaExceeded
			}
		}
		_, err := tx.Exec(ctx, "INSERT INTO uploads ("+uploadCols+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
			u.ID, u.Owner, u.Filename, u.Size, u.ContentType, ns(u.Created), u.Uploaded)
		if isUnique(err) {
			return storage.ErrExists
		}
		return err
	})
	return err
}

// Upload implements storage.Uploads.
func (s *Store) Upload(ctx context.Context, id string) (storage.Upload, error) {
	if err := s.check(ctx); err != nil {
		return storage.Upload{}, fail(ctx, err, "upload")
	}
	u, err := scanUpload(s.pool.QueryRow(ctx, "SELECT "+uploadCols+" FROM uploads WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Upload{}, fmt.Errorf("pgstore: upload %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Upload{}, fail(ctx, err, "upload")
	}
	return u, nil
}

// MarkUploaded implements storage.Uploads.
func (s *Store) MarkUploaded(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return fail(ctx, err, "mark uploaded")
	}
	var was bool
	err := s.pool.QueryRow(ctx, `UPDATE uploads SET uploaded = true FROM (SELECT id, uploaded FROM uploads WHERE id = $1 FOR UPDATE) old
		WHERE uploads.id = old.id RETURNING old.uploaded`, id).Scan(&was)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgstore: mark uploaded %q: %w", id, storage.ErrNotFound)
	case err != nil:
		return fail(ctx, err, "mark uploaded")
	case was:
		return fmt.Errorf("pgstore: mark uploaded %q: %w", id, storage.ErrExists)
	}
	return nil
}

// UploadUsage implements storage.Uploads.
func (s *Store) UploadUsage(ctx context.Context, owner string) (int64, error) {
	if err := noEmpty(owner); err != nil {
		return 0, fail(ctx, err, "upload usage")
	}
	n, err := s.count(ctx, "upload usage", "SELECT coalesce(sum(size), 0)::int8 FROM uploads WHERE owner = $1", owner)
	return int64(n), err
}

// ListUploads implements storage.Uploads.
func (s *Store) ListUploads(ctx context.Context, owner string) ([]storage.Upload, error) {
	if err := noEmpty(owner); err != nil {
		return nil, fail(ctx, err, "list uploads")
	}
	return s.uploads(ctx, "list uploads", "SELECT "+uploadCols+" FROM uploads WHERE owner = $1 ORDER BY created, id COLLATE \"C\"", owner)
}

// ExpiredUploads implements storage.Uploads.
func (s *Store) ExpiredUploads(ctx context.Context, uploadedBefore, pendingBefore time.Time) ([]storage.Upload, error) {
	return s.uploads(ctx, "expired uploads", `SELECT `+uploadCols+` FROM uploads
		WHERE (uploaded AND created < $1) OR (NOT uploaded AND created < $2)`, uploadedBefore.UnixNano(), pendingBefore.UnixNano())
}

// DeleteUpload implements storage.Uploads.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	_, err := s.exec(ctx, "delete upload", "DELETE FROM uploads WHERE id = $1", id)
	return err
}

// DeleteUploads implements storage.Uploads.
func (s *Store) DeleteUploads(ctx context.Context, owner string) error {
	if err := noEmpty(owner); err != nil {
		return fail(ctx, err, "delete uploads")
	}
	_, err := s.exec(ctx, "delete uploads", "DELETE FROM uploads WHERE owner = $1", owner)
	return err
}
