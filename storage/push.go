package storage

import "context"

// PushRegistration is one device's registration for push notifications
// (XEP-0357): the app server to notify and the node there that stands
// for the device.
type PushRegistration struct {
	// Service is the app server's JID (never empty).
	Service string
	// Node is the pubsub node on the app server (may be empty, though
	// clients always name one).
	Node string
	// Form is the publish-options data form the client sent with its
	// enable request (such as a secret the app server checks), as
	// serialised XML, or nil. The store keeps it as given.
	Form []byte
}

// PushRegistrations keeps the push registrations of users, identified per
// user by Service and Node. Optional: the push module finds it by type
// assertion.
type PushRegistrations interface {
	// PushRegistrations returns the user's registrations ordered by
	// Service, then Node; none is an empty result.
	PushRegistrations(ctx context.Context, user string) ([]PushRegistration, error)
	// PutPushRegistration adds r for the user, replacing the one with the
	// same Service and Node (a client enabling again). An empty Service
	// is refused like an empty JID.
	PutPushRegistration(ctx context.Context, user string, r PushRegistration) error
	// DeletePushRegistrations removes the user's registration with the
	// app server service and node, or all of those with service if node
	// is empty (XEP-0357 5: disabling without a node). Deleting what does
	// not exist is not an error.
	DeletePushRegistrations(ctx context.Context, user, service, node string) error
	// DeleteAllPushRegistrations removes every registration of the user
	// (account removal).
	DeleteAllPushRegistrations(ctx context.Context, user string) error
}
