package main

// community migrate-store -pg-dsn DSN [-data DIR]: copies everything the
// bbolt database of a data folder holds into an empty PostgreSQL
// database, for moving a server to store = postgres, and the data
// folder's secrets (dialback, FAST, the ACME account and certificate)
// into its secrets table (secrets.go), so that every node started on it
// shares them. The other files of the data folder (certificate, uploads)
// stay where they are and are used as they are.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/pgstore"
)

// migrateBatch is how many archived messages go to PostgreSQL in one
// transaction.
const migrateBatch = 1000

// storeCopy counts what copyStore copied.
type storeCopy struct {
	Accounts, Rooms, Offline, Archived, Invites, Reports, Uploads, PEPNodes int
}

func cmdMigrateStore(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community migrate-store", stderr, "data", "domain", "muc", "pubsub")
	f.usage("Usage: community migrate-store -pg-dsn DSN [-data DIR] [-domain D]\n" +
		"Copies the data folder's bbolt database into an empty PostgreSQL database; then serve with -store postgres -pg-dsn DSN.\n" +
		"Stop the server first: the database must not change while it is copied.\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("migrate-store takes no arguments")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if cfg.PGDSN == "" {
		return usageErrorf("migrate-store needs -pg-dsn (the PostgreSQL database to copy into)")
	}
	// The source is always the bbolt file; -store is about the target.
	path, err := existingDatabase(cfg, false)
	if err != nil {
		return err
	}
	src, err := openStore(path, "stop the server before migrate-store: the database must not change while it is copied", nil)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openPostgres(cfg)
	if err != nil {
		return err
	}
	defer dst.Close()
	ctx := context.Background()
	empty, err := dst.Empty(ctx)
	if err != nil {
		return err
	}
	if !empty {
		return errors.New("migrate-store: the PostgreSQL database already holds data: copy only into an empty database (a new one, or drop its tables), so that nothing is mixed or doubled")
	}
	var services []string
	for _, d := range cfg.Domains {
		services = append(services, "conference."+d)
	}
	n, err := copyStore(ctx, src, dst, cfg.Domains, services)
	if err != nil {
		return fmt.Errorf("migrate-store: %w (the target is incomplete: empty it before trying again)", err)
	}
	secrets, err := copySecrets(ctx, cfg.Data, dst)
	if err != nil {
		return fmt.Errorf("migrate-store: secrets: %w", err)
	}
	fmt.Fprintf(stdout, "migrate-store: %s into PostgreSQL: %d accounts, %d rooms, %d offline messages, %d archived messages, %d PEP nodes, %d uploads, %d invitations, %d reports, %d secrets\n",
		path, n.Accounts, n.Rooms, n.Offline, n.Archived, n.PEPNodes, n.Uploads, n.Invites, n.Reports, secrets)
	return nil
}

// copyStore copies everything src holds into dst: accounts with their
// credentials, and for each account, room and pubsub service (the owners
// of per-owner data) rosters, offline messages, last activity, private
// XML and vCards, block lists, PEP nodes with items and subscriptions,
// push registrations, FAST devices, uploads, archives with their IDs and
// preferences; then rooms, the names of deleted accounts held back from
// registration (when src can list them, as boltstore can), invitations
// and reports.
func copyStore(ctx context.Context, src fullStore, dst *pgstore.Store, domains, roomServices []string) (storeCopy, error) {
	var n storeCopy
	accts, err := src.ListAccounts(ctx, "")
	if err != nil {
		return n, err
	}
	var owners []string
	for _, a := range accts {
		if err := dst.CreateAccount(ctx, a); err != nil {
			return n, err
		}
		owners = append(owners, a.JID)
		n.Accounts++
	}
	for _, svc := range roomServices {
		rooms, err := src.ListRooms(ctx, svc)
		if err != nil {
			return n, err
		}
		for _, r := range rooms {
			if err := dst.PutRoom(ctx, r); err != nil {
				return n, err
			}
			owners = append(owners, r.JID)
			n.Rooms++
		}
	}
	for _, d := range domains {
		owners = append(owners, d, "pubsub."+d)
	}
	for _, o := range owners {
		if err := copyOwner(ctx, src, dst, o, &n); err != nil {
			return n, fmt.Errorf("%s: %w", o, err)
		}
	}
	if h, ok := src.(interface {
		HeldNames(context.Context) (map[string]time.Time, error)
	}); ok {
		held, err := h.HeldNames(ctx)
		if err != nil {
			return n, err
		}
		for j, until := range held {
			if err := dst.HoldName(ctx, j, until); err != nil {
				return n, err
			}
		}
	}
	invs, err := src.ListInvites(ctx)
	if err != nil {
		return n, err
	}
	for _, inv := range invs {
		if err := dst.CreateInvite(ctx, inv); err != nil {
			return n, err
		}
		n.Invites++
	}
	reps, err := src.ListReports(ctx)
	if err != nil {
		return n, err
	}
	for _, r := range reps {
		if _, err := dst.AddReport(ctx, r); err != nil {
			return n, err
		}
		n.Reports++
	}
	return n, nil
}

// copyOwner copies the data kept per bare JID.
func copyOwner(ctx context.Context, src fullStore, dst *pgstore.Store, o string, n *storeCopy) error {
	items, _, err := src.Roster(ctx, o)
	if err != nil {
		return err
	}
	for _, it := range items {
		if _, err := dst.PutRosterItem(ctx, o, it); err != nil {
			return err
		}
	}
	msgs, err := src.OfflineMessages(ctx, o)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, err := dst.PushOffline(ctx, o, m, 0); err != nil {
			return err
		}
		n.Offline++
	}
	switch t, status, err := src.LastActivity(ctx, o); {
	case err == nil:
		if err := dst.SetLastActivity(ctx, o, t, status); err != nil {
			return err
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	keys, err := src.PrivateXMLKeys(ctx, o)
	if err != nil {
		return err
	}
	for _, k := range keys {
		doc, err := src.PrivateXML(ctx, o, k)
		if err != nil {
			return err
		}
		if err := dst.PutPrivateXML(ctx, o, k, doc); err != nil {
			return err
		}
	}
	if bl, err := src.Blocklist(ctx, o); err != nil {
		return err
	} else if len(bl) > 0 {
		if err := dst.Block(ctx, o, bl); err != nil {
			return err
		}
	}
	if err := copyPEP(ctx, src, dst, o, n); err != nil {
		return err
	}
	regs, err := src.PushRegistrations(ctx, o)
	if err != nil {
		return err
	}
	for _, r := range regs {
		if err := dst.PutPushRegistration(ctx, o, r); err != nil {
			return err
		}
	}
	devs, err := src.FastDevices(ctx, o)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if err := dst.PutFastDevice(ctx, o, d); err != nil {
			return err
		}
	}
	ups, err := src.ListUploads(ctx, o)
	if err != nil {
		return err
	}
	for _, u := range ups {
		if err := dst.CreateUpload(ctx, u, 0); err != nil {
			return err
		}
		n.Uploads++
	}
	if err := copyArchive(ctx, src, dst, o, n); err != nil {
		return err
	}
	prefs, err := src.ArchivePrefs(ctx, o)
	if err != nil {
		return err
	}
	if prefs.Default != "" || len(prefs.Always) > 0 || len(prefs.Never) > 0 {
		return dst.SetArchivePrefs(ctx, o, prefs)
	}
	return nil
}

// copyPEP copies the owner's nodes with their items, oldest first, and
// subscriptions.
func copyPEP(ctx context.Context, src fullStore, dst *pgstore.Store, o string, n *storeCopy) error {
	nodes, err := src.PEPNodes(ctx, o)
	if err != nil {
		return err
	}
	for _, node := range nodes {
		cfg, err := src.PEPNodeConfig(ctx, o, node)
		if err != nil {
			return err
		}
		if err := dst.CreatePEPNode(ctx, o, node, cfg); err != nil {
			return err
		}
		items, err := src.PEPItems(ctx, o, node, nil, 0)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := dst.PublishPEPItem(ctx, o, node, it, 0); err != nil {
				return err
			}
		}
		subs, err := src.PEPSubscribers(ctx, o, node)
		if err != nil {
			return err
		}
		for _, j := range subs {
			if err := dst.SubscribePEPNode(ctx, o, node, j); err != nil {
				return err
			}
		}
		n.PEPNodes++
	}
	return nil
}

// copyArchive copies the owner's archive page by page, keeping each
// message's ID (the stanza-id clients hold) and time.
func copyArchive(ctx context.Context, src fullStore, dst *pgstore.Store, o string, n *storeCopy) error {
	after := ""
	for {
		page, err := src.QueryArchive(ctx, o, storage.ArchiveQuery{After: after, Limit: migrateBatch})
		if err != nil {
			return err
		}
		if len(page.Messages) > 0 {
			if err := dst.ImportArchived(ctx, o, page.Messages); err != nil {
				return err
			}
			n.Archived += len(page.Messages)
			after = page.Messages[len(page.Messages)-1].ID
		}
		if page.Complete || len(page.Messages) == 0 {
			return nil
		}
	}
}

// copySecrets puts the secrets of the data folder into st where st has
// none yet (a node that started on st before made its own, which stay),
// and returns how many it put there.
func copySecrets(ctx context.Context, data string, st storage.Secrets) (int, error) {
	n := 0
	put := func(name string, b []byte) error {
		ok, err := st.SwapSecret(ctx, name, nil, b)
		if ok {
			n++
		}
		return err
	}
	for _, s := range []struct {
		name, file string
		min        int // a shorter file is not used (loadSecret)
	}{
		{secretDialback, s2sSecretFile, secretSize}, {secretFAST, fastSecretFile, secretSize},
		{secretACMEAccount, filepath.Join(acmeDir, acmeAccountFile), 1},
	} {
		b, err := os.ReadFile(filepath.Join(data, s.file))
		if errors.Is(err, os.ErrNotExist) || err == nil && len(b) < s.min {
			continue
		}
		if err != nil {
			return n, err
		}
		if err := put(s.name, b); err != nil {
			return n, err
		}
	}
	key, kerr := os.ReadFile(filepath.Join(data, acmeDir, acmeKeyFile))
	chain, cerr := os.ReadFile(filepath.Join(data, acmeDir, acmeCertFile))
	if kerr == nil && cerr == nil {
		if _, err := tls.X509KeyPair(chain, key); err != nil {
			return n, fmt.Errorf("the ACME certificate in %s: %w", filepath.Join(data, acmeDir), err)
		}
		if err := put(secretACMECert, append(key, chain...)); err != nil {
			return n, err
		}
	}
	return n, nil
}
