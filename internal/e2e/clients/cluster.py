#!/usr/bin/python3
"""Cluster scenarios for the Go end-to-end tests in internal/e2e: clients
of one service connected to different nodes of a Treff cluster.

Usage: /usr/bin/python3 cluster.py [common options] --addrs A0,A1,... SCENARIO

Built on slix.py: the same options, JSON lines and exit codes. --addrs
lists the nodes' STARTTLS addresses; each client connects to the node the
scenario gives it (--addr is only slix.py's required default). Every wait
for the server is bounded by --wait seconds (and the whole scenario by
--timeout).

A node learns of another node's sessions through NATS, and applies a row
update before it hands over a stanza that node published afterwards; so a
client that has received a contact's presence through the cluster knows
that its own node has the contact's state. The scenarios wait for that
presence before they send anything that depends on it, never for a time.
"""

import asyncio
import copy
import os
import sys

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import slix
from slix import NS_CLIENT, emit, fail, step


class Client(slix.Client):
    """A slix.py client on one node that also records the presence it gets."""

    def __init__(self, name, jid, password, o, node):
        opts = copy.copy(o)
        opts.addr = o.addrs.split(",")[node]
        super().__init__(name, jid, password, opts, o.mech)
        self.node = node
        self.presences_in = []
        self.register_handler(Callback("e2e presence", MatchXPath("{%s}presence" % NS_CLIENT), self._presence))

    def _presence(self, p):
        prio = p.xml.find("{%s}priority" % NS_CLIENT)
        self.presences_in.append({
            "from": str(p["from"]),
            "type": p.xml.get("type", ""),
            "priority": int(prio.text) if prio is not None and prio.text else 0,
            "status": p["status"],
        })

    async def wait_presence(self, pred, what, wait):
        step("%s: wait for %s" % (self.name, what))
        async def loop():
            while True:
                for p in self.presences_in:
                    if pred(p):
                        return p
                await asyncio.sleep(0.01)
        try:
            return await asyncio.wait_for(loop(), wait)
        except asyncio.TimeoutError:
            fail("%s: no %s within %gs (got %r)" % (self.name, what, wait, self.presences_in))

    async def wait_msg(self, pred, what, wait):
        try:
            return await asyncio.wait_for(self.wait_message(pred, what), wait)
        except asyncio.TimeoutError:
            fail("%s: no %s within %gs" % (self.name, what, wait))


def parse_session(spec):
    """RESOURCE=PRIORITY@NODE"""
    res, _, rest = spec.partition("=")
    prio, _, node = rest.partition("@")
    return res, int(prio), int(node)


async def route(o, clients):
    """bob (the sender, on --sender-node, subscribed both ways with alice)
    comes online; alice's sessions (--session RESOURCE=PRIORITY@NODE) log
    in on their nodes and send presence with their priority. bob waits for
    each session's presence (so his node has its row), then sends one chat
    message to alice's bare JID and one to each full JID. Each session
    reports the messages it got up to its own full-JID message, the
    presence it got from bob (a probe answered across nodes) and from its
    other resources; bob reports the presence he got."""
    bare = slixmpp.JID(o.jid).bare
    sender = Client("sender", o.peer, o.peer_password, o, o.sender_node)
    clients.append(sender)
    await sender.login()
    await sender.presence()
    sessions = []
    for spec in o.session:
        res, prio, node = parse_session(spec)
        c = Client(res, bare + "/" + res, o.password, o, node)
        c.prio = prio
        sessions.append(c)
    clients += sessions
    await asyncio.gather(*(c.login() for c in sessions))
    await asyncio.gather(*(c.presence(c.prio) for c in sessions))
    for c in sessions:
        await sender.wait_presence(
            lambda p, c=c: p["from"] == c.boundjid.full and p["type"] == "" and p["priority"] == c.prio,
            "presence of %s with priority %d" % (c.boundjid.full, c.prio), o.wait)
    for c in sessions:
        # Every resource hears of every other, on whatever node.
        for other in sessions:
            if other is not c:
                await c.wait_presence(lambda p, other=other: p["from"] == other.boundjid.full and p["type"] == "",
                                      "presence of %s" % other.boundjid.full, o.wait)
        await c.wait_presence(lambda p: p["from"] == sender.boundjid.full and p["type"] == "",
                              "bob's presence", o.wait)
    step("sender: send")
    sender.send_message(mto=bare, mbody="bare " + o.body, mtype="chat")
    for c in sessions:
        sender.send_message(mto=c.boundjid.full, mbody="full %s %s" % (c.boundjid.resource, o.body), mtype="chat")
    await sender.sync()
    for c in sessions:
        want = "full %s %s" % (c.boundjid.resource, o.body)
        await c.wait_msg(lambda m, want=want: m["body"] == want, "its full-JID message", o.wait)
        emit("received", client=c.name, jid=c.boundjid.full, node=c.node,
             bodies=[m["body"] for m in c.messages if m["type"] != "error"],
             presence_from=sorted({p["from"] for p in c.presences_in if p["type"] == ""}))
    emit("received", client=sender.name, jid=sender.boundjid.full, node=sender.node,
         bodies=[m["body"] for m in sender.messages if m["type"] != "error"],
         error_from=[m["from"] for m in sender.messages if m["type"] == "error"],
         presence_from=sorted({p["from"] for p in sender.presences_in if p["type"] == ""}))


async def conflict(o, clients):
    """alice binds --jid's resource on node 0, then again on node 1: the
    first stream must end with <conflict/>. bob on node 2 then sends to
    the full JID, which only the second session gets."""
    sender = Client("sender", o.peer, o.peer_password, o, 2)
    clients.append(sender)
    await sender.login()
    await sender.presence()
    first = Client("first", o.jid, o.password, o, 0)
    clients.append(first)
    await first.login()
    await first.presence(1)
    await sender.wait_presence(lambda p: p["from"] == o.jid and p["priority"] == 1, "first's presence", o.wait)
    second = Client("second", o.jid, o.password, o, 1)
    clients.append(second)
    await second.login()
    step("first: wait for the stream to end")
    async def ended():
        while first.disconnects == 0:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(ended(), o.wait)
    except asyncio.TimeoutError:
        fail("the first session was not closed")
    await second.presence(2)
    await sender.wait_presence(lambda p: p["from"] == o.jid and p["priority"] == 2, "second's presence", o.wait)
    sender.send_message(mto=o.jid, mbody=o.body, mtype="chat")
    await second.wait_msg(lambda m: m["body"] == o.body, "bob's message", o.wait)
    emit("conflict_result", first_jid=first.boundjid.full, second_jid=second.boundjid.full,
         first_stream_errors=first.stream_errors, first_messages=len(first.messages),
         first_disconnects=first.disconnects, second_messages=[m["body"] for m in second.messages])


async def node_lost(o, clients):
    """alice is online on node 2 and bob on node 0 sees her. The script
    then writes --gate + ".ready" and waits for --gate to exist: meanwhile
    the Go test cuts node 2 off NATS and waits until the other nodes have
    dropped its sessions (or kills node 2: --killed). bob then sends alice
    a message: it must go to offline storage, and alice gets it when she
    logs in again on node 1 (her old client, on the cut-off node, must
    not)."""
    sender = Client("sender", o.peer, o.peer_password, o, 0)
    clients.append(sender)
    await sender.login()
    await sender.presence()
    old = Client("old", o.jid + "/old", o.password, o, 2)
    clients.append(old)
    await old.login()
    await old.presence(1)
    await sender.wait_presence(lambda p: p["from"] == old.boundjid.full and p["type"] == "", "alice's presence", o.wait)
    with open(o.gate + ".ready", "w") as f:
        f.write("ready\n")
    step("wait for the Go test to cut node 2 off")
    async def gate():
        while not os.path.exists(o.gate):
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(gate(), o.wait * 3)
    except asyncio.TimeoutError:
        fail("the gate was not opened")
    sender.send_message(mto=slixmpp.JID(o.jid).bare, mbody=o.body, mtype="chat")
    await sender.sync()
    new = Client("new", o.jid + "/new", o.password, o, 1)
    clients.append(new)
    await new.login()
    await new.presence(1)
    await new.wait_msg(lambda m: m["body"] == o.body, "the offline message", o.wait)
    if not o.killed:
        await old.sync()
    emit("node_lost_result", old_messages=[x["body"] for x in old.messages],
         sender_errors=[x["from"] for x in sender.messages if x["type"] == "error"])


async def announced(o, clients):
    """bob is online on node 0 and alice on node 1, each seeing the
    other's presence (so each node has the other's row). The script then
    writes --gate + ".ready"; meanwhile the Go test has the server on node
    0 announce (community announce). Both wait for the headline message
    from the domain and report it."""
    bob = Client("bob", o.peer, o.peer_password, o, 0)
    alice = Client("alice", o.jid, o.password, o, 1)
    clients += [bob, alice]
    await asyncio.gather(bob.login(), alice.login())
    await asyncio.gather(bob.presence(), alice.presence())
    await bob.wait_presence(lambda p: p["from"] == alice.boundjid.full and p["type"] == "", "alice's presence", o.wait)
    await alice.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["type"] == "", "bob's presence", o.wait)
    with open(o.gate + ".ready", "w") as f:
        f.write("ready\n")
    for c in (bob, alice):
        m = await c.wait_msg(lambda m: m["type"] == "headline", "the announcement", o.wait * 3)
        emit("headline", client=c.name, node=c.node, sender=m["from"], body=m["body"])


async def gate_open(o, name):
    """Writes --gate.NAME.ready, then waits for --gate.NAME to exist."""
    path = "%s.%s" % (o.gate, name)
    with open(path + ".ready", "w") as f:
        f.write("ready\n")
    step("wait for the Go test (%s)" % name)
    async def wait():
        while not os.path.exists(path):
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(wait(), o.wait * 6)
    except asyncio.TimeoutError:
        fail("the gate %s was not opened" % name)


async def online_sync(o, clients):
    """bob on node 0 and alice on node 1 come online and see each other.
    Gate "online": the Go test acts on node 0 meanwhile. Then bob sends
    alice a chat message with --body and she gets it, so that node 1 has
    applied what node 0 published before it; she reports it ("synced").
    Gate "synced": the Go test acts on node 1 meanwhile. They stay online
    all along (their logins are done before the Go test's actions)."""
    bob = Client("bob", o.peer, o.peer_password, o, 0)
    alice = Client("alice", o.jid, o.password, o, 1)
    clients += [bob, alice]
    await asyncio.gather(bob.login(), alice.login())
    await asyncio.gather(bob.presence(), alice.presence())
    await bob.wait_presence(lambda p: p["from"] == alice.boundjid.full and p["type"] == "", "alice's presence", o.wait)
    await alice.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["type"] == "", "bob's presence", o.wait)
    await gate_open(o, "online")
    bob.send_message(mto=alice.boundjid.full, mbody=o.body, mtype="chat")
    await alice.wait_msg(lambda m: m["body"] == o.body, "bob's message", o.wait)
    emit("synced", client=alice.name, node=alice.node)
    await gate_open(o, "synced")


SCENARIOS = {"route": route, "conflict": conflict, "node_lost": node_lost, "announced": announced,
             "online_sync": online_sync}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--addrs", required=True, help="the nodes' STARTTLS addresses, comma-separated")
    p.add_argument("--sender-node", type=int, default=0)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--gate", default="", help="node_lost: file the Go test creates to go on; announced: the file this script creates, + .ready")
    p.add_argument("--killed", action="store_true", help="node_lost: node 2 is killed, not cut off (the old client is gone)")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
