#!/usr/bin/python3
"""Group chat across the nodes of a Treff cluster, for the Go end-to-end
test TestClusterRooms in internal/e2e: occupants of one room on different
nodes, and the room's node killed.

Usage: /usr/bin/python3 clusterrooms.py [common options] --addrs A0,A1,A2 SCENARIO

Built on muc.py (slixmpp's xep_0045 plugin): the same options, JSON lines
and exit codes. --addrs lists the nodes' STARTTLS addresses; each client
connects to the node the scenario gives it.

Events, besides muc.py's:

    seen        what one occupant got before the kill: the groupchat
                bodies (each as often as it arrived), the occupant JIDs
                whose presence it got, and how often from each
    after       what the occupants got after rejoining: the bodies of
                the last message, the rejoin's self-presence codes and
                affiliation
"""

import asyncio
import copy
import os
import sys

from slixmpp import JID

import muc
import slix
from slix import emit, fail, step


class Client(muc.MUCClient):
    """A MUCClient on one node."""

    def __init__(self, name, jid, password, o, node):
        opts = copy.copy(o)
        opts.addr = o.addrs.split(",")[node]
        super().__init__(name, jid, password, opts)
        self.node = node

    def bodies(self, room):
        return [m["body"] for m in self.muc_messages
                if m["type"] == "groupchat" and m["body"] is not None and m["from"].startswith(room + "/")
                and m["delay"] is None]

    def self_presence(self, room, nick, start):
        full = "%s/%s" % (room, nick)
        for p in self.muc_presences[start:]:
            if p["from"] == full and p["type"] == "" and 110 in p["codes"]:
                return p
        return None


async def kill_owner(o, clients):
    """alice (node 0) creates --room, persistent and members-only, and
    makes bob and carol members; bob (node 1) and carol (node 2) join;
    each sends a groupchat message (--body and the sender's name), and
    every occupant must get all three. The script writes --gate + ".ready"
    and waits for --gate: meanwhile the Go test kills node 0, the room's
    node. bob and carol wait for their removal with status 332, and
    rejoin: a surviving node has taken the room over. dave (no member) is
    refused; alice logs in again on node 2 and rejoins as the owner; carol
    sends a message that bob and alice get."""
    alice = Client("alice", o.jid, o.password, o, 0)
    bob = Client("bob", o.peer, o.peer_password, o, 1)
    carol = Client("carol", o.third, o.third_password, o, 2)
    clients += [alice, bob, carol]
    await muc.login_all(alice, bob, carol)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_persistentroom": True,
                                       "muc#roomconfig_membersonly": True})
    for c in (bob, carol):
        await alice.admin("member " + c.name, room,
                          alice["xep_0045"].set_affiliation(JID(room), "member", jid=c.boundjid.bare, timeout=o.wait))
    await bob.join(room, "bob")
    await carol.join(room, "carol")
    occupants = (alice, bob, carol)
    for c in occupants:
        for other in occupants:
            await c.wait_until(lambda c=c, other=other: any(
                p["from"] == "%s/%s" % (room, other.name) and p["type"] == "" for p in c.muc_presences),
                "%s's presence" % other.name)
    for c in occupants:
        await c.groupchat(room, "%s from %s" % (o.body, c.name))
    want = sorted("%s from %s" % (o.body, c.name) for c in occupants)
    for c in occupants:
        await c.wait_until(lambda c=c: all(b in c.bodies(room) for b in want), "the three messages")
    for c in occupants:
        await c.sync()
        avail = [p["from"] for p in c.muc_presences if p["type"] == ""]
        emit("seen", client=c.name, node=c.node, bodies=sorted(c.bodies(room)),
             presence_from=sorted(set(avail)), presence_count={f: avail.count(f) for f in set(avail)})

    with open(o.gate + ".ready", "w") as f:
        f.write("ready\n")
    step("wait for the Go test to kill node 0")

    async def gate():
        while not os.path.exists(o.gate):
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(gate(), o.wait * 3)
    except asyncio.TimeoutError:
        fail("the gate was not opened")
    for c in (bob, carol):
        await c.wait_removed(room, c.name, 332)
    marks = {}
    for c in (bob, carol):
        marks[c.name] = len(c.muc_presences)
        # The plugin forgot the room with the unavailable self-presence.
        await c.join(room, c.name)
    dave = Client("dave", o.fourth, o.fourth_password, o, 1)
    alice2 = Client("alice2", JID(o.jid).bare + "/back", o.password, o, 2)
    clients += [dave, alice2]
    await muc.login_all(dave, alice2)
    await dave.join_refused("not a member", room, "dave")
    marks["alice2"] = len(alice2.muc_presences)
    await alice2.join(room, "alice")
    last = "%s after the take-over" % o.body
    await carol.groupchat(room, last)
    for c in (bob, carol, alice2):
        await c.wait_until(lambda c=c: last in c.bodies(room), "the message after the take-over")
    for c in (bob, carol, alice2):
        await c.sync()
        nick = "alice" if c is alice2 else c.name
        p = c.self_presence(room, nick, marks[c.name])
        emit("after", client=c.name, node=c.node, bodies=[b for b in c.bodies(room) if b == last],
             codes=p["codes"] if p else [], affiliation=p["item"]["affiliation"] if p and p["item"] else "",
             removed_332=sum(1 for x in c.muc_presences if x["type"] == "unavailable" and 332 in x["codes"]))


SCENARIOS = {"kill_owner": kill_owner}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--addrs", required=True, help="the nodes' STARTTLS addresses, comma-separated")
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--room", required=True, help="local part of the room")
    p.add_argument("--third", required=True, help="carol's JID")
    p.add_argument("--third-password", required=True)
    p.add_argument("--fourth", required=True, help="dave's JID")
    p.add_argument("--fourth-password", required=True)
    p.add_argument("--gate", required=True, help="file the Go test creates to go on")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
