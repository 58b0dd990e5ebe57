#!/usr/bin/python3
"""Scenarios behind a load balancer (HAProxy) for the Go end-to-end tests
in internal/e2e (proxy_test.go): in-band registration from a chosen
source address, and a node draining under a stream of messages.

Usage: /usr/bin/python3 proxy.py [common options] SCENARIO [scenario options]

Built on slix.py and register.py: the same options (plus --wait, --source
and the drain options), the same JSON lines on stdout, the same exit
codes.

--source IP binds every connection the script opens to that local
address (slixmpp has no option for it: the event loop's
create_connection is wrapped), so that clients on one machine come from
several loopback addresses, as the balancer sees them.

drain: alice and bob log in through the balancer (--addr), both with
stream management (xep_0198, resumption asked). bob sends alice's bare
JID numbered chat messages, asking for an acknowledgement every ten,
while his session is up; once alice has received 20, the script prints a
"ready" marker (the test then drains the node). Both clients report the
stream error and where it sends them ("redirect"), and follow it (the
client connects to the see-other-host address itself: slixmpp 1.8.3's
own handler reconnects to the JID's domain on port 5222 instead); each
connection the balancer closes (no node up) is retried every 0.25 s, at
most 400 times.
alice comes back only once bob has sent 5 messages in his next session
(they wait in offline storage). Each new session sends initial presence
(offline messages come then) and prints a "session" event. Once the --stop file exists and bob has sent 20
messages in a later session, bob waits until the server acknowledged all
he sent (bounded by --wait), alice until she has every message bob saw
acknowledged (bounded by 2 x --wait), and the script prints "summary":
the ids bob saw acknowledged, the ids alice received, and each client's
session and connection counts ("sessions", "connections").
"""

import asyncio
import os
import sys

import register
import slix
from slix import emit, fail, step

SOURCE = None

_create_connection = asyncio.BaseEventLoop.create_connection


async def _bound_create_connection(self, protocol_factory, host=None, port=None, **kw):
    """create_connection from SOURCE, when given (not for STARTTLS, which
    wraps the socket it has)."""
    if SOURCE and kw.get("sock") is None and host is not None:
        kw.setdefault("local_addr", (SOURCE, 0))
    return await _create_connection(self, protocol_factory, host, port, **kw)


asyncio.BaseEventLoop.create_connection = _bound_create_connection


class Roamer(slix.Client):
    """A client with stream management that follows see-other-host and
    keeps reconnecting while no node takes it."""

    def __init__(self, name, jid, password, opts):
        # Without channel binding (see slix.py's forced_without_binding).
        super().__init__(name, jid, password, opts, mech="SCRAM-SHA-256")
        self.register_plugin("xep_0198")
        self["xep_0198"].window = 10
        self.sessions = 0
        self.live = False
        self.done = False
        self.retries = 0
        self.target = None  # (host, port) the server sent us to
        self.hold = None    # while it returns True, reconnecting waits
        self.acked = set()
        # slixmpp 1.8.3 follows see-other-host with ClientXMPP.connect()
        # without an address, which is the JID's domain on port 5222, not
        # the address it was sent to: its handler is kept from acting
        # (no attempt is below -1) and this client connects itself.
        self.max_redirects = -1
        self.add_event_handler("session_start", self._new_session)
        self.add_event_handler("session_resumed", self._resumed)
        self.add_event_handler("stanza_acked", self._acked)
        self.add_event_handler("stream_error", self._redirect)
        self.add_event_handler("disconnected", self._retry)

    def _connection_failed(self, err):
        # The balancer itself is always there; slix.Client gives up at once,
        # which this client does not.
        emit("connection_failed", client=self.name, error=str(err))

    def _new_session(self, _):
        self.sessions += 1
        self.live = True
        self.send_presence()
        emit("session", client=self.name, n=self.sessions, connects=self.connects)

    def _resumed(self, _):
        self.live = True
        emit("resumed", client=self.name)

    def _acked(self, stanza):
        if stanza.xml.tag == "{jabber:client}message" and stanza["id"]:
            self.acked.add(stanza["id"])

    def _redirect(self, err):
        self.live = False
        if err["condition"] == "see-other-host":
            to = err["see_other_host"]
            host, _, port = to.rpartition(":")
            self.target = (host.strip("[]"), int(port))
            emit("redirect", client=self.name, to=to)

    def _retry(self, _):
        self.live = False
        if self.done:
            return
        if self.sessions == 0 or self.target is None:
            return
        self.retries += 1
        if self.retries > 400:
            emit("gave_up", client=self.name)
            return
        if self.hold is not None and self.hold():
            self.loop.call_later(0.25, self._retry, None)
            return
        self.loop.call_later(0.25, self.connect, self.target)


def received_ids(c):
    return {m["id"] for m in c.messages if m["body"].startswith("drain-")}


async def until(pred, what, timeout):
    step("wait for %s" % what)
    for _ in range(int(timeout / 0.02) + 1):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return False


async def drain(o, clients):
    alice = Roamer("alice", o.jid, o.password, o)
    bob = Roamer("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    to = alice.boundjid.bare
    sent = 0
    sent_at_session = {}
    ready = False
    # alice comes back only once bob has sent 5 messages in his next
    # session: those wait for her in offline storage.
    alice.hold = lambda: sum(n for s, n in sent_at_session.items() if s > 1) < 5
    step("bob: send while his session is up")
    for _ in range(int(o.timeout / 0.02)):
        if bob.live and bob.sessions > 0:
            sent += 1
            m = bob.make_message(mto=to, mbody="drain-%d" % sent, mtype="chat")
            m["id"] = "drain-%d" % sent
            m.send()
            sent_at_session[bob.sessions] = sent_at_session.get(bob.sessions, 0) + 1
        if not ready and len(received_ids(alice)) >= 20:
            ready = True
            emit("marker", client="alice", name="ready")
        later = sum(n for s, n in sent_at_session.items() if s > 1)
        if os.path.exists(o.stop) and later >= 20 and alice.live:
            break
        await asyncio.sleep(0.05 if ready else 0.01)
    else:
        fail("the --stop file did not appear, or bob sent nothing in a later session")
    step("bob: wait for the server to acknowledge everything")
    # After a round trip everything bob sent is out (request_ack's <r/>
    # would overtake stanzas still queued); the answer to the <r/> then
    # covers it all.
    await bob.sync()
    bob["xep_0198"].request_ack()
    await until(lambda: len(bob["xep_0198"].unacked_queue) == 0, "bob's acknowledgements", o.wait)
    acked = set(bob.acked)
    await until(lambda: acked <= received_ids(alice), "alice to have every acknowledged message", 2 * o.wait)
    alice.done = bob.done = True
    emit("summary", sent=sent, acked=sorted(acked), received=sorted(received_ids(alice)),
         sessions={c.name: c.sessions for c in (alice, bob)},
         connections={c.name: c.connects for c in (alice, bob)})


SCENARIOS = dict(register.SCENARIOS)
SCENARIOS["drain"] = drain


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--source", default="", help="local IP address of every connection")
    p.add_argument("--stop", default="", help="drain: the file whose existence ends the stream of messages")
    # register.py's options, for its scenarios.
    p.add_argument("--attempt", nargs=2, action="append", default=[], metavar=("JID", "PASSWORD"))
    p.add_argument("--login", action="store_true")
    p.add_argument("--force-feature", action="store_true")
    p.add_argument("--again-mech", default="SCRAM-SHA-256")
    p.add_argument("--try-mech", action="append", default=[])
    p.add_argument("--new-password", default="")
    p.add_argument("--short-password", default="")
    opts = p.parse_args(sys.argv[1:])
    SOURCE = opts.source or None
    slix.run(opts, SCENARIOS)
