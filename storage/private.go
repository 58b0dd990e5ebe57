package storage

import "context"

// PrivateXML stores small XML documents per user under a key chosen by
// the module that writes them: private XML storage (XEP-0049) keeps one
// document per element name and namespace, vcard-temp (XEP-0054) the
// user's vCard. The store keeps the bytes as given and does not look at
// them; size limits are the modules' business. Optional: the modules that
// need it find it by type assertion.
type PrivateXML interface {
	// PrivateXML returns the user's document stored under key, or
	// ErrNotFound.
	PrivateXML(ctx context.Context, user, key string) ([]byte, error)
	// PutPrivateXML stores doc under key, replacing what was there. An
	// empty user or key is refused with an error.
	PutPrivateXML(ctx context.Context, user, key string, doc []byte) error
	// DeletePrivateXML removes the user's document under key; a missing
	// one is not an error.
	DeletePrivateXML(ctx context.Context, user, key string) error
	// DeleteAllPrivateXML removes every document of the user (account
	// removal).
	DeleteAllPrivateXML(ctx context.Context, user string) error
}
