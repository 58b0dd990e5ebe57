#!/usr/bin/python3
"""Backup scenario (community backup, while the server runs) for the Go
end-to-end tests in internal/e2e: two clients chat while the test takes a
backup.

Usage: /usr/bin/python3 backup.py [common options] chat --started FILE --stop FILE

Built on slix.py and im.py: the same options, JSON lines on stdout (ending with
{"event": "done"}) and exit codes.

Scenario:

    chat      alice and bob log in and send each other chat messages in
              turns, each waiting for the other's; after the first
              exchange the scenario creates --started, and it stops at the
              first exchange after --stop exists (at most --rounds
              exchanges: it fails if --stop never appears).

Events, besides those of slix.py:

    chatted   rounds: the exchanges made, each message delivered once
"""

import asyncio
import os
import sys

import slixmpp

import im
import slix
from slix import emit, fail, step


async def chat(o, clients):
    # IMClient: slixmpp would otherwise answer the subscription requests
    # that initial presence brings (carol's, pending) and change rosters.
    alice = im.IMClient("alice", o.jid, o.password, o)
    bob = im.IMClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    await asyncio.gather(alice.presence(), bob.presence())
    a, b = slixmpp.JID(o.jid).bare, slixmpp.JID(o.peer).bare
    rounds = 0
    while True:
        if rounds >= o.rounds:
            fail("%s never appeared within %d exchanges" % (o.stop, o.rounds))
        # Looked at before the exchange: the backup ran during at least
        # one whole exchange.
        stopping = os.path.exists(o.stop)
        body = "backup chat %d" % rounds
        step("exchange %d" % rounds)
        alice.send_message(mto=b, mbody=body, mtype="chat")
        await bob.wait_message(lambda m, body=body: m["body"] == body, "alice's %r" % body)
        bob.send_message(mto=a, mbody="re: " + body, mtype="chat")
        await alice.wait_message(lambda m, body=body: m["body"] == "re: " + body, "bob's answer to %r" % body)
        rounds += 1
        if rounds == 1:
            with open(o.started, "w") as f:
                f.write("1\n")
        if stopping:
            break
    for c, n in ((alice, rounds), (bob, rounds)):
        got = [m for m in c.messages if m["body"].startswith(("backup chat", "re: backup chat"))]
        if len(got) != n:
            fail("%s got %d chat messages in %d exchanges" % (c.name, len(got), n))
    emit("chatted", rounds=rounds)


SCENARIOS = {"chat": chat}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--started", required=True, help="file created after the first exchange")
    p.add_argument("--stop", required=True, help="the scenario ends after this file appears")
    p.add_argument("--rounds", type=int, default=3000, help="most exchanges")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
