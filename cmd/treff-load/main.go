// Command treff-load is a load generator for XMPP servers, written against
// the wire protocol so that it drives any server (Treff, Prosody, ejabberd).
//
// It connects N clients over STARTTLS, authenticates them (PLAIN or SCRAM),
// binds, sends initial presence, runs a scenario for a bounded time and
// reports throughput, latency percentiles, errors and, given the server's
// PID, the server process's RSS and CPU time from /proc.
//
// Scenarios:
//
//	login     connect + TLS + SASL + bind, repeatedly (as fast as possible,
//	          or at -rate per client); reports the login rate and, with
//	          -pid, server CPU per login
//	chat      pairs of clients send each other messages (at -rate per
//	          client, or as fast as possible with one in flight); latency
//	          from a timestamp in the body
//	idle      hold N sessions; reports the server's memory per session
//	presence  every user has -contacts mutual subscriptions (set up first,
//	          through the protocol); users log out and in again in a loop;
//	          latency from a timestamp in the presence status, measured by
//	          the contacts that receive the broadcast; with -rounds N,
//	          N rounds in lockstep instead: all log in, each waits for
//	          every contact's presence, all log out; with -online X, each
//	          user is online for that share of its cycle and the cycles
//	          are spread, so that share of the users is online at a time
//	muc       the users join the room -room (XEP-0045), or rooms of
//	          -room-size occupants named after it, and -senders occupants
//	          of each send groupchat messages; every occupant counts every
//	          copy it gets: one message in, N copies out, so the ops are
//	          delivered copies (the fan-out) and CPU per op the cost of one
//	          copy
//
// Accounts are PREFIX0 .. PREFIX(N-1) at -domain with one password. They
// must exist, or the tool creates them before the run and removes them
// after it: with -register through in-band registration (XEP-0077), or
// with -create-cmd / -delete-cmd, shell commands that get "LOCALPART
// PASSWORD" (create) or "LOCALPART" (delete) lines on standard input, e.g.
//
//	treff-load -create-cmd 'while read u p; do prosodyctl register $u localhost $p; done'
//
// With -sm and -carbons, clients enable stream management (XEP-0198, with
// resumption, answering the server's acknowledgement requests) and message
// carbons (XEP-0280) after binding, as mobile and desktop clients do, so
// that their cost on the server shows in the chat and muc scenarios.
//
// With -scenario login -sm -resume each user logs in once and then, in a
// loop, drops its TCP connection without closing the stream and reconnects
// resuming it (XEP-0198), inline in SASL2 with -sasl2 or -fast (XEP-0388,
// XEP-0484: one round trip after TLS), or after RFC 6120 SASL and the
// stream restart otherwise: the reconnect of a phone whose network
// changed, measured alone. No presence is sent in this mode.
//
// With -relay the tool talks to a plain TLS relay (bench/relay) instead of
// an XMPP server: clients connect with direct TLS, skip the negotiation and
// exchange the same stanzas, which gives the physical limit of the machine.
//
// With -rate, every client keeps its own fixed schedule, shifted by its
// share of the period so that the clients do not send in bursts; the
// report's "sent" is what was actually offered. -pid takes several PIDs
// (a server made of several processes) and sums their CPU and RSS.
//
// Every run is bounded by -duration and -users, and the tool only ever
// connects to -addr; use it on servers you run.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"
)

type config struct {
	addr, domain, prefix, password, mech, scenario string
	users                                          int
	duration                                       time.Duration
	rate                                           float64
	pids                                           []int // the server's processes, for /proc readings
	insecure                                       bool
	timeout                                        time.Duration

	register             bool         // create and remove accounts with XEP-0077
	createCmd, deleteCmd string       // or with these shell commands
	contacts             int          // presence: contacts per user
	rounds               int          // presence: lockstep rounds instead of -duration
	room                 string       // muc: room bare JID
	roomSize             int          // muc: occupants per room (0: one room)
	senders              int          // muc: occupants per room that send (0: all)
	online               float64      // presence: share of each cycle a user is online
	relay                bool         // talk to a raw TLS relay
	concurrency          int          // logins at a time while setting up
	sm                   bool         // enable stream management (XEP-0198)
	sasl2                bool         // log in with SASL2 and Bind 2 (XEP-0388, XEP-0386)
	fast                 bool         // and with FAST tokens after the first login (XEP-0484)
	tlsResume            bool         // resume TLS sessions (tickets) when the server offers them
	resume               bool         // login: reconnect and resume the stream (XEP-0198) instead of a new session
	carbons              bool         // enable message carbons (XEP-0280)
	sources              []netip.Addr // local addresses to spread connections over
}

func main() {
	var c config
	var printUsers, asJSON bool
	flag.StringVar(&c.addr, "addr", "127.0.0.1:5222", "server `address` (STARTTLS port; with -relay the relay's direct-TLS port); several, comma-separated (cluster nodes): client i connects to the i-th modulo their number, so that chat pairs (0,1), (2,3)... span two nodes")
	flag.StringVar(&c.domain, "domain", "localhost", "XMPP `domain` of the accounts")
	flag.StringVar(&c.prefix, "prefix", "load", "account name `prefix`: accounts are PREFIX0..PREFIX(N-1)")
	flag.StringVar(&c.password, "password", "loadtest-password", "`password` of every account")
	flag.StringVar(&c.mech, "mech", "PLAIN", "SASL `mechanism`: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256")
	flag.StringVar(&c.scenario, "scenario", "chat", "`scenario`: login, chat, idle, presence or muc")
	flag.IntVar(&c.users, "users", 10, "number of clients (chat uses pairs)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long the scenario runs")
	flag.Float64Var(&c.rate, "rate", 0, "chat, muc: messages per second per sending client; login, presence: logins per second per client (0: as fast as possible, one in flight; presence: one a second); each client keeps its own schedule, shifted by its share of the period, and skips what it falls behind on (the report's sent says what was offered)")
	var pids string
	flag.StringVar(&pids, "pid", "", "server process `PIDs` (comma-separated: the sums are reported) for RSS and CPU readings from /proc (empty: none)")
	flag.BoolVar(&c.insecure, "insecure", true, "accept any server certificate (test servers with self-signed certificates)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout for each login")
	flag.BoolVar(&c.register, "register", false, "create the accounts by in-band registration (XEP-0077) before the run and remove them after it")
	flag.StringVar(&c.createCmd, "create-cmd", "", "shell `command` run once before the run with \"LOCALPART PASSWORD\" lines on stdin, to create the accounts")
	flag.StringVar(&c.deleteCmd, "delete-cmd", "", "shell `command` run once after the run with \"LOCALPART\" lines on stdin, to delete the accounts")
	flag.IntVar(&c.contacts, "contacts", 10, "presence: contacts per user (even, less than -users)")
	flag.IntVar(&c.rounds, "rounds", 0, "presence: run this many lockstep rounds (all users log in, wait for each contact's presence, log out) instead of for -duration")
	flag.StringVar(&c.room, "room", "load@conference.localhost", "muc: bare `JID` of the room (with -room-size, rooms are named after it: load0@…, load1@…)")
	flag.IntVar(&c.roomSize, "room-size", 0, "muc: occupants per room; the users are split into rooms of this size (0: all in one room)")
	flag.IntVar(&c.senders, "senders", 0, "muc: occupants of each room that send, at -rate each or one in flight (0: all); the others only receive")
	flag.Float64Var(&c.online, "online", 1, "presence: share of each user's cycle (1/-rate) it is online, 0 < x <= 1; below 1 the users' cycles are spread over the period, so this share of them is online at any time")
	flag.BoolVar(&c.relay, "relay", false, "chat only: talk to a raw TLS relay (bench/relay) instead of an XMPP server")
	flag.IntVar(&c.concurrency, "concurrency", 32, "logins in flight while setting up")
	flag.BoolVar(&c.sasl2, "sasl2", false, "log in with SASL2 and Bind 2 (XEP-0388, XEP-0386) in one <authenticate/>, as Conversations, Monal and xmpp.js do; with -sm, stream management is enabled in Bind 2")
	flag.BoolVar(&c.fast, "fast", false, "with SASL2: the first login of each user asks for a FAST token (XEP-0484), later ones use it (HT-SHA-256-NONE), as a phone's reconnects do")
	flag.BoolVar(&c.resume, "resume", false, "login, with -sm: each user logs in once, then drops its connection and reconnects resuming the stream (XEP-0198; inside SASL2 with -sasl2 or -fast, after SASL and the restart otherwise), as a phone whose network changed does; ops are reconnects")
	flag.BoolVar(&c.tlsResume, "tls-resume", false, "resume TLS sessions with the tickets the server hands out (one cache for all clients), as a phone reconnecting does")
	flag.BoolVar(&c.carbons, "carbons", false, "enable message carbons (XEP-0280) after binding, as most mobile and desktop clients do")
	flag.BoolVar(&c.sm, "sm", false, "enable stream management (XEP-0198) with resumption after binding, and answer the server's acknowledgement requests, as mobile clients do")
	var sources string
	flag.StringVar(&sources, "sources", "", "local `addresses` to connect from, round robin, as a range (127.0.1.1-127.0.1.8) or a list: beyond ~28,000 connections one address runs out of ephemeral ports")
	flag.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	flag.BoolVar(&printUsers, "print-users", false, "print the JIDs the run uses, one per line, and exit")
	flag.Parse()
	if printUsers {
		for i := 0; i < c.users; i++ {
			fmt.Printf("%s@%s\n", c.user(i), c.domain)
		}
		return
	}
	var err error
	if c.pids, err = parsePIDs(pids); err != nil {
		fmt.Fprintln(os.Stderr, "treff-load:", err)
		os.Exit(2)
	}
	if c.sources, err = parseSources(sources); err != nil {
		fmt.Fprintln(os.Stderr, "treff-load:", err)
		os.Exit(2)
	}
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "treff-load:", err)
		os.Exit(2)
	}
	rep, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "treff-load:", err)
		os.Exit(1)
	}
	if asJSON {
		rep.printJSON(os.Stdout)
	} else {
		rep.print(os.Stdout)
	}
	if rep.ops == 0 {
		os.Exit(1)
	}
}

// check reports a configuration that cannot run.
func (c *config) check() error {
	switch {
	case c.users < 1 || c.users > 1_000_000:
		return fmt.Errorf("-users must be between 1 and 1000000")
	case c.duration <= 0 || c.duration > 24*time.Hour:
		return fmt.Errorf("-duration must be between 0 and 24h")
	case c.concurrency < 1:
		return fmt.Errorf("-concurrency must be at least 1")
	case c.register && (c.createCmd != "" || c.deleteCmd != ""):
		return fmt.Errorf("-register and -create-cmd/-delete-cmd exclude each other")
	case c.resume && (c.scenario != "login" || !c.sm):
		return fmt.Errorf("-resume works only with -scenario login and -sm")
	case c.relay && c.scenario != "chat":
		return fmt.Errorf("-relay works only with -scenario chat")
	case c.rounds < 0 || c.rounds > 0 && c.scenario != "presence":
		return fmt.Errorf("-rounds must not be negative and works only with -scenario presence")
	case c.roomSize < 0 || c.senders < 0:
		return fmt.Errorf("-room-size and -senders must not be negative")
	case c.online <= 0 || c.online > 1:
		return fmt.Errorf("-online must be in (0, 1]")
	case c.online < 1 && c.rounds > 0:
		return fmt.Errorf("-online does not work with -rounds")
	case c.scenario == "presence" && (c.contacts < 2 || c.contacts%2 != 0 || c.contacts >= c.users):
		return fmt.Errorf("presence: -contacts must be even, at least 2 and less than -users")
	}
	switch c.scenario {
	case "login", "chat", "idle", "presence", "muc":
	default:
		return fmt.Errorf("unknown scenario %q", c.scenario)
	}
	return nil
}
