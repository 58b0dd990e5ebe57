// Package treff is an embeddable XMPP server (RFC 6120, RFC 6121), used the
// way one uses net/http: configure a Server, hand it listeners, shut it down
// with a context.
//
// A complete server for one domain, with accounts in a bbolt file:
//
//	store, err := boltstore.Open("treff.db", nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close()
//	cert, err := tls.LoadX509KeyPair("cert.pem", "key.pem")
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &treff.Server{
//		Hosts:         []treff.Host{{Domain: "example.org", Certificates: []tls.Certificate{cert}}},
//		Storage:       store,
//		Authenticator: &auth.Store{Accounts: store},
//		Modules:       im.Modules(), // roster, presence, offline, disco, ping, ...
//	}
//	go srv.ListenAndServeTLS() // direct TLS on :5223 (XEP-0368)
//	log.Fatal(srv.ListenAndServe()) // STARTTLS on :5222
//
// # What the server does
//
// Every client stream must be encrypted before authentication: STARTTLS is
// required on Serve's listeners, and ServeTLS's listeners speak TLS first.
// Clients authenticate with SCRAM-SHA-256, SCRAM-SHA-1 (each also -PLUS,
// bound to the TLS channel with tls-exporter or tls-server-end-point) or
// PLAIN (PLAIN only ever inside TLS); the Authenticator decides, and the default one in
// package auth keeps only salted SCRAM keys. After binding a resource, every
// stanza the client sends has its 'from' stamped by the server, then goes to
// the router: stanzas for local accounts are delivered by the rules of RFC
// 6121 section 8 (a message to a bare JID reaches the available resources
// with the highest non-negative priority), IQs to the server go to the
// module registered for their namespace, and everything else is answered
// with the stanza error the RFCs prescribe.
//
// Each session has a bounded outbound queue and its own writer, so a slow
// client never holds up anyone else; it is disconnected when it falls too
// far behind. Malformed XML, oversized stanzas, unknown hosts, idle and
// stalled connections end the stream with the matching stream error.
//
// # Other servers, web clients, devices
//
// Package s2s federates (server-to-server streams with SASL EXTERNAL or
// dialback; add its Module and serve its listener). Packages websocket
// and bosh are http.Handlers that run web clients' streams through
// Server.ServeConn, with the same session layer as TCP. Stream management
// (XEP-0198, with resumption: package sm, on the session's acknowledged
// delivery, Session.Track), client state indication (package csi),
// message carbons, archives, blocking, vCards, PEP and file upload are
// modules (im.Modules wires the usual set). Package cluster runs several
// servers sharing one store as one service, routing between them on
// NATS (Server.Table).
//
// # Extending it
//
// Features are Modules: values in Server.Modules that, at start-up,
// register IQ handlers, stream features, stream-level elements (nonzas),
// SASL mechanisms (package saslmech), service discovery entries and typed
// hooks on a Registry; hooks run by phase (Registry.InPhase: filter,
// stamp, handle, observe). Per-session state is a SessionState. Built-in
// features are modules on the same public API.
//
// As with net/http, a module's panic harms one stanza: the server
// recovers it, logs the module and the stack, and answers with
// <internal-server-error/>; temporary accept errors back off instead of
// ending Serve; Shutdown(ctx) returns ctx's error when ctx ends; and
// Context is the base of every context the server hands out. Storage is a composition of small interfaces in package
// storage, with backends in storage/memstore and storage/boltstore and a
// conformance suite in storage/storagetest. Package stanza has the stanza
// errors that handlers return (return nil, stanza.ItemNotFound) and the
// child elements that Stanza.Children walks. Package trefftest starts a
// server for tests.
package treff
