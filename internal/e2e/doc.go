// Package e2e holds end-to-end tests that drive a Treff server (started
// in-process with trefftest) with real XMPP clients: slixmpp, run as
// /usr/bin/python3 subprocesses from the scripts in clients/. The package
// has no code of its own; see the _test.go files.
//
// Without slixmpp the tests are skipped, unless CI=true, when they fail
// (.ci/run installs python3-slixmpp).
package e2e
