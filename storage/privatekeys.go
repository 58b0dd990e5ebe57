package storage

import "context"

// PrivateXMLKeys lists the keys under which a user has documents in a
// PrivateXML store, for exporting them (XEP-0227). Optional beside
// PrivateXML: both shipped backends implement it.
type PrivateXMLKeys interface {
	// PrivateXMLKeys returns the keys of the user's documents, sorted; a
	// user without documents has none (not an error).
	PrivateXMLKeys(ctx context.Context, user string) ([]string, error)
}
