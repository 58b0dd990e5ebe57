package mam

import (
	"bytes"
	"context"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Archiver answers the XEP-0313 requests about one owner's archive in a
// storage.Archive: queries (with the extended fields and RSM paging), the
// query form and the metadata; it appends messages and runs the retention
// job. Module answers its users with one. A module that keeps archives
// owned by something other than an account (a group chat room, whose
// archive is keyed by the room's bare JID) uses its own Archiver, after
// deciding itself who may ask.
//
// Store must be set before use; the other fields have useful zero values.
// An Archiver must not be copied after first use.
type Archiver struct {
	// Store keeps the archives.
	Store storage.Archive
	// MaxPage is the most messages one query returns. Zero means
	// DefaultMaxPage.
	MaxPage int
	// Retention is how long messages are kept by the job that
	// StartRetention starts. Zero keeps them forever. DeleteArchiveBefore
	// acts on every archive of the store, so one job per store is enough:
	// with two jobs on one store, the shorter retention applies to all.
	Retention time.Duration
	// Now is the clock. nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex // guards stop and done
	stop context.CancelFunc
	done chan struct{}
}

func (a *Archiver) maxPage() int {
	if a.MaxPage <= 0 {
		return DefaultMaxPage
	}
	return a.MaxPage
}

func (a *Archiver) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// Stamp returns the time to archive a message with: now, in UTC, to the
// millisecond (the precision of the <delay/> stamps, so that a client's
// 'start' and 'end' taken from them select exactly those messages).
func (a *Archiver) Stamp() time.Time {
	return a.now().UTC().Truncate(time.Millisecond)
}

// Answer answers iq, a request about owner's archive with a payload in
// namespace NS: a query (get: the query form; set: the results), or a
// metadata request (get). It returns the payload of the IQ result, or the
// error to answer with (a stanza.Error for the requester's mistakes;
// treff.ErrNoReply if the requester went away during a query). The
// caller has decided that the requester may ask.
func (a *Archiver) Answer(ctx context.Context, srv *treff.Server, owner jid.JID, iq *treff.Stanza) ([]byte, error) {
	switch iq.Payload.Local {
	case "query":
		if iq.Type == "get" {
			return []byte(queryForm), nil
		}
		return a.Query(ctx, srv, owner, iq)
	case "metadata":
		if iq.Type != "get" {
			return nil, stanza.BadRequest
		}
		return a.metadata(ctx, owner)
	}
	return nil, stanza.FeatureNotImplemented
}

// Query runs the archive query iq (an IQ set with a <query/>) on owner's
// archive: it sends the page's messages, each in a <result/> from owner,
// to the requester (to its session if it is a local one, otherwise
// through srv.Route), and returns the <fin/> to answer iq with.
func (a *Archiver) Query(ctx context.Context, srv *treff.Server, owner jid.JID, iq *treff.Stanza) ([]byte, error) {
	return a.query(ctx, srv, iq, owner)
}

// Append stores msg in owner's archive and returns its archive ID. A zero
// msg.Time is set to Stamp().
func (a *Archiver) Append(ctx context.Context, owner string, msg storage.ArchivedMessage) (string, error) {
	if msg.Time.IsZero() {
		msg.Time = a.Stamp()
	}
	return a.Store.AppendArchive(ctx, owner, msg)
}

// AppendStanzaID appends <stanza-id xmlns='urn:xmpp:sid:0' by='by'
// id='id'/> (XEP-0359) to b.
func AppendStanzaID(b []byte, by, id string) []byte {
	b = append(b, "<stanza-id xmlns='"+NSSID+"' by='"...)
	b = treff.AppendEscaped(b, by)
	b = append(b, "' id='"...)
	b = treff.AppendEscaped(b, id)
	return append(b, "'/>"...)
}

// WithoutStanzaIDs returns the serialised stanza raw without its
// <stanza-id/> children that claim to be by the given JID (which only
// that entity may add), and whether there were any; raw itself if none.
func WithoutStanzaIDs(raw []byte, by jid.JID) ([]byte, bool) {
	if !bytes.Contains(raw, []byte(NSSID)) {
		return raw, false
	}
	ins := inspect(raw, by, by.String(), nil)
	if len(ins.spoofed) == 0 {
		return raw, false
	}
	return without(raw, ins.spoofed), true
}

// StartRetention starts the retention job if Retention is positive: it
// deletes the messages older than Retention from every archive of the
// store a minute after the start and then hourly, until StopRetention.
// srv is for logging.
func (a *Archiver) StartRetention(srv *treff.Server) {
	if a.Retention <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(srv.Context())
	done := make(chan struct{})
	a.mu.Lock()
	a.stop, a.done = cancel, done
	a.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTimer(retentionFirst)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			a.expire(ctx, srv, a.now())
			t.Reset(retentionEvery)
		}
	}()
}

// StopRetention ends the retention job, if any, and waits for it (or for
// ctx). It may be called more than once.
func (a *Archiver) StopRetention(ctx context.Context) error {
	a.mu.Lock()
	stop, done := a.stop, a.done
	a.stop = nil
	a.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expire deletes the messages older than the retention period before now
// and returns how many.
func (a *Archiver) expire(ctx context.Context, srv *treff.Server, now time.Time) int {
	n, err := a.Store.DeleteArchiveBefore(ctx, now.Add(-a.Retention))
	if err != nil {
		if ctx.Err() == nil {
			srv.Log().Error("mam: deleting old archived messages failed", "err", err)
		}
		return n
	}
	if n > 0 {
		srv.Log().Info("mam: old archived messages deleted", "deleted", n, "older_than", a.Retention.String())
	}
	return n
}

// Archivable reports whether the serialised message raw has content worth
// archiving: a <body/>, an OMEMO <encrypted/> payload or a XEP-0334
// <store/> hint, and no <no-store/> or <no-permanent-store/> hint. The
// message's type is not looked at.
func Archivable(raw []byte) bool {
	return mayHaveContent(raw) && inspect(raw, jid.JID{}, "", nil).archivable
}
