package pie

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage"
)

// Options set how Apply and Import store what they read.
type Options struct {
	// Domains, if not empty, are the domains users may be imported to;
	// users of other hosts are skipped (and noted).
	Domains []string
	// RoomServices, if not empty, are the group chat services rooms may
	// be imported to; rooms of others are skipped (and noted). Empty:
	// rooms are skipped.
	RoomServices []string
	// Iterations is the PBKDF2 iteration count for credentials derived
	// from plain passwords; below auth.MinIterations means that.
	Iterations int
	// Decode is passed to Decode by Import.
	Decode DecodeOptions
}

// Import reads a XEP-0227 document from r and stores its users and rooms
// in store with Apply. It stops at the first error and returns what it
// did up to there.
func Import(ctx context.Context, store storage.Store, r io.Reader, opts Options) (Summary, error) {
	var sum Summary
	err := Decode(r, opts.Decode, func(e Entry) error {
		s, err := Apply(ctx, store, e, opts)
		sum.Add(s)
		return err
	})
	return sum, err
}

// Apply stores one user or room in store, leaving what the store has:
// an existing account keeps its credentials and gets only the data it
// lacks; an existing room is kept.
func Apply(ctx context.Context, store storage.Store, e Entry, opts Options) (Summary, error) {
	var s Summary
	switch {
	case e.User != nil:
		return s, applyUser(ctx, store, e.User, opts, &s)
	case e.Room != nil:
		return s, applyRoom(ctx, store, e.Room, opts, &s)
	}
	return s, nil
}

func applyUser(ctx context.Context, store storage.Store, u *User, opts Options, s *Summary) error {
	if _, err := bareJID(u.JID, true); err != nil {
		return fmt.Errorf("pie: user: %w", err)
	}
	if len(opts.Domains) > 0 && !slices.Contains(opts.Domains, domainOf(u.JID)) {
		s.AccountsSkipped++
		s.note("%s: its domain is not served here", u.JID)
		return nil
	}
	fail := func(what string, err error) error { return fmt.Errorf("pie: %s: %s: %w", u.JID, what, err) }
	creds := slices.Clone(u.Credentials)
	if u.Password != "" {
		derived, err := auth.NewCredentials(u.Password, opts.Iterations)
		if err != nil {
			return fail("password", err)
		}
		// Credentials from the file win over derived ones of the same
		// mechanism (they are what the user had).
		for _, c := range derived {
			if !slices.ContainsFunc(creds, func(x storage.Credential) bool { return x.Mechanism == c.Mechanism }) {
				creds = append(creds, c)
			}
		}
	}
	if len(creds) == 0 {
		s.note("%s: no password or SCRAM credentials in the file: the account cannot log in until its password is set (community passwd)", u.JID)
	}
	acct := u.Account
	acct.JID, acct.Credentials = u.JID, creds
	if acct.Created.IsZero() {
		acct.Created = nowUTC()
	}
	err := store.CreateAccount(ctx, acct)
	switch {
	case errors.Is(err, storage.ErrExists):
		s.AccountsSkipped++
		s.note("%s: account exists; kept its password, added what it lacked", u.JID)
	case err != nil:
		return fail("account", err)
	default:
		s.Accounts++
		if len(creds) > 0 && !slices.ContainsFunc(creds, func(c storage.Credential) bool { return c.Mechanism == "SCRAM-SHA-256" }) {
			s.SHA1Only++
		}
	}
	for _, what := range u.Skipped {
		s.note("%s: %s (not imported)", u.JID, what)
	}

	// Roster: contacts the user has already are kept as they are.
	have, _, err := store.Roster(ctx, u.JID)
	if err != nil {
		return fail("roster", err)
	}
	for _, it := range u.Roster {
		if it.JID == u.JID {
			continue
		}
		if slices.ContainsFunc(have, func(h storage.RosterItem) bool { return h.JID == it.JID }) {
			s.ContactsSkipped++
			continue
		}
		if _, err := store.PutRosterItem(ctx, u.JID, it); err != nil {
			return fail("roster item "+it.JID, err)
		}
		s.Contacts++
	}

	px, hasPrivate := store.(storage.PrivateXML)
	putNew := func(key string, doc []byte) (bool, error) {
		if _, err := px.PrivateXML(ctx, u.JID, key); err == nil {
			return false, nil
		} else if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		return true, px.PutPrivateXML(ctx, u.JID, key, doc)
	}
	if u.VCard != nil {
		if !hasPrivate {
			s.VCardsSkipped++
			s.note("%s: vCard (the store keeps no private XML)", u.JID)
		} else if stored, err := putNew(vcardKey, u.VCard); err != nil {
			return fail("vCard", err)
		} else if stored {
			s.VCards++
		} else {
			s.VCardsSkipped++
		}
	}
	for _, d := range u.Private {
		if !hasPrivate {
			s.PrivateSkipped++
			continue
		}
		if stored, err := putNew(d.Key, d.Doc); err != nil {
			return fail("private XML "+d.Key, err)
		} else if stored {
			s.Private++
		} else {
			s.PrivateSkipped++
		}
	}

	if len(u.PEP) > 0 {
		if err := applyPEP(ctx, store, u, s); err != nil {
			return err
		}
	}

	if len(u.Offline) > 0 {
		stored, err := store.OfflineMessages(ctx, u.JID)
		if err != nil {
			return fail("offline messages", err)
		}
		for _, m := range u.Offline {
			if slices.ContainsFunc(stored, func(o storage.OfflineMessage) bool {
				return bytes.Equal(o.Stanza, m.Stanza) && o.Received.Equal(m.Received)
			}) {
				s.OfflineSkipped++
				continue
			}
			if _, err := store.PushOffline(ctx, u.JID, m, 0); err != nil {
				return fail("offline message", err)
			}
			s.Offline++
		}
	}
	return nil
}

func applyPEP(ctx context.Context, store storage.Store, u *User, s *Summary) error {
	pep, ok := store.(storage.PEP)
	if !ok {
		s.PEPSkipped += len(u.PEP)
		s.note("%s: %d PEP nodes (the store keeps no PEP)", u.JID, len(u.PEP))
		return nil
	}
	for _, n := range u.PEP {
		cfg := DefaultPEPConfig()
		if n.Config != nil {
			cfg = *n.Config
		}
		switch err := pep.CreatePEPNode(ctx, u.JID, n.Name, cfg); {
		case errors.Is(err, storage.ErrExists):
		case err != nil:
			return fmt.Errorf("pie: %s: PEP node %s: %w", u.JID, n.Name, err)
		default:
			s.PEPNodes++
		}
		for _, it := range n.Items {
			have, err := pep.PEPItems(ctx, u.JID, n.Name, []string{it.ID}, 0)
			if err != nil {
				return fmt.Errorf("pie: %s: PEP node %s: %w", u.JID, n.Name, err)
			}
			if len(have) > 0 {
				s.PEPSkipped++
				continue
			}
			if err := pep.PublishPEPItem(ctx, u.JID, n.Name, it, 0); err != nil {
				return fmt.Errorf("pie: %s: PEP item %s on %s: %w", u.JID, it.ID, n.Name, err)
			}
			s.PEPItems++
		}
	}
	return nil
}

func applyRoom(ctx context.Context, store storage.Store, r *storage.Room, opts Options, s *Summary) error {
	rs, ok := store.(storage.Rooms)
	if !ok || !slices.Contains(opts.RoomServices, domainOf(r.JID)) {
		s.RoomsSkipped++
		s.note("room %s: no group chat service %s here", r.JID, domainOf(r.JID))
		return nil
	}
	if _, err := rs.Room(ctx, r.JID); err == nil {
		s.RoomsSkipped++
		s.note("room %s exists; kept as it is", r.JID)
		return nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("pie: room %s: %w", r.JID, err)
	}
	room := *r
	if room.Created.IsZero() {
		room.Created = nowUTC()
	}
	if err := rs.PutRoom(ctx, room); err != nil {
		return fmt.Errorf("pie: room %s: %w", r.JID, err)
	}
	s.Rooms++
	return nil
}
