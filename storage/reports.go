package storage

import (
	"context"
	"time"
)

// Report is a user's spam or abuse report (XEP-0377) kept for the
// server's admins. It holds no message content unless the reporter wrote
// some into Text.
type Report struct {
	// ID is set by the store, unique within it, and orders reports by
	// arrival.
	ID string
	// Time is when the report arrived (UTC).
	Time time.Time
	// Reporter is the bare JID of the local user who reported.
	Reporter string
	// Reported is the JID reported.
	Reported string
	// Reason is the reason URI, e.g. "urn:xmpp:reporting:spam".
	Reason string
	// Text is what the reporter wrote, possibly empty.
	Text string
	// MessageIDs are the reported messages' stanza ids (XEP-0359) as
	// "BY ID", possibly none.
	MessageIDs []string
}

// Reports keeps spam and abuse reports for the admins. Optional: the
// abuse module finds it by type assertion.
type Reports interface {
	// AddReport stores r, setting its ID, which it returns.
	AddReport(ctx context.Context, r Report) (string, error)
	// ListReports returns every report, oldest first.
	ListReports(ctx context.Context) ([]Report, error)
	// DeleteReport removes the report; ErrNotFound if there is none with
	// that ID.
	DeleteReport(ctx context.Context, id string) error
}
