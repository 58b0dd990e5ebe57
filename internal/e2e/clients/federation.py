#!/usr/bin/python3
"""Federation scenarios for the Go end-to-end tests in internal/e2e
(federation_test.go): two users on two different servers, each client
logged in to its own server, talk to each other over the servers'
server-to-server link.

Usage: /usr/bin/python3 federation.py [options] SCENARIO

Built on slix.py and im.py: the same kind of JSON lines on stdout (one
object per line, ending with {"event": "done"}) and the same exit codes.
The two clients are named "a" (--a-jid, --a-password, --a-addr) and "b"
(--b-jid, --b-password, --b-addr); both trust the certificate authority in
--cert. Every wait for something a server should send is bounded by --wait
seconds (and the whole scenario by --timeout); a wait that runs out ends
the scenario with an "error" event that says what was missing.

Scenarios:

    pair     a and b log in (roster, initial presence); a asks to subscribe
             to b, b approves and asks back, a approves: both rosters end
             at "both" and each sees the other online. Each then changes
             its status, which the other must see; a chat message goes
             each way, a XEP-0199 ping to the other's full JID each way;
             and each sends a message to a user that does not exist on the
             other's server (--a-nobody, --b-nobody), which must come back
             as an error.
    unknown  a alone sends a message to --a-nobody (on a domain that does
             not resolve, or whose server cannot be reached) and waits for
             the error that must come back.
    muc      group chat across servers, a on the server of the group chat
             service --service, b on another (nicknames: the local parts
             of their JIDs). b tries to create --room-3 (refused: only
             local users create rooms); a creates --room members-only
             (owner form) and --room-2 as an instant room; b joins
             --room-2 without an invitation, a sees him come, b leaves
             it, a sees him go; b tries --room (refused: members only);
             a invites him (mediated, --reason), the invitation reaches
             b from the room; b joins; a groupchat message goes each way
             (both get both), a private message through the room each
             way; a lists the members (muc#admin); b leaves, a sees it.
             The MUC clients are muc.py's MUCClient.
    nodes    a's domain runs on two nodes sharing one store: a logs in on
             one (--a-addr) and sends b a message; b answers and pings
             a's full JID, which the other node, where b's server
             delivers, cannot reach (an error comes back); a logs in
             again on the other node (--c-addr) and gets b's answer from
             offline storage.
    cluster  a domain served by a cluster of nodes with cluster routing
             (cluster_federation_test.go): alice logs in on node A
             (--node-a), bob on node B (--node-b, priority 5), carol and
             dan on the remote server (--remote). carol and alice, then
             carol and bob, subscribe to each other; each sees the
             other's presence and status change; a chat message goes
             each way between carol and each of them; carol asks bob's
             full JID for its software version (XEP-0092) and pings
             alice's. bob logs in a second resource b2 on node A
             (priority 1): carol's message to bob's bare JID reaches b
             on node B only; b2 raises its priority to 10 and the next
             one reaches b2 only. carol logs in a second resource c2:
             the answers to her server's probes bring the presence of
             alice, b and b2. bob's b sends dan (no subscription)
             directed presence. The script then writes --gate + ".ready"
             and waits for --gate: meanwhile the Go test kills node B.
             carol's c and c2 (a contact) and dan (directed presence)
             get bob/b's unavailable presence, b2 too, and carol's next
             message to bob reaches b2.

Events besides those of slix.py and im.py (presence, roster, message)
and, for muc, muc.py's (muc_presence, muc_message, joined, join_error,
config_reply, admin_reply, disco_info):

    subscribed    a client's roster shows the peer with subscription both
    status_seen   a client saw the peer's new status
    ping          the answer to a ping: type, from, error
    version       the answer to a software version request: type, from,
                  name
    bounce        the error that came back for a message to a user or
                  domain that does not exist: from, type, conditions
"""

import argparse
import asyncio
import copy
import os
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

import im
import muc
import slix
from im import marker
from slix import emit, fail, step


def client(name, o, jid, password, addr):
    """An im.IMClient for one side: its own server address, the ping
    plugin (it answers pings too)."""
    co = copy.copy(o)
    co.addr = addr
    return im.IMClient(name, jid, password, co, plugins=["xep_0030", "xep_0199"])


async def wait_bounce(c, to, wait):
    """Sends a chat message to `to` and waits up to wait seconds for the
    error message that must come back from it (or its domain)."""
    body = "to %s %s" % (to, c.opts.body)
    bare = slixmpp.JID(to).bare
    domain = slixmpp.JID(to).domain
    before = len(c.messages)
    marker(c, "send_to_nobody", to=to)
    t0 = time.monotonic()
    c.send_message(mto=to, mbody=body, mtype="chat")

    def bounced():
        return [m for m in c.messages[before:] if m["type"] == "error" and m["from"] in (to, bare, domain)]
    await c.wait_until(lambda: bounced(), "an error reply to the message to %s" % to, timeout=wait)
    m = bounced()[0]
    emit("bounce", client=c.name, sent_to=to, seconds=round(time.monotonic() - t0, 3),
         **{k: m[k] for k in ("from", "type", "error", "body")})


async def ping(c, to):
    step("%s: ping %s" % (c.name, to))
    try:
        r = await c["xep_0199"].send_ping(to, timeout=c.opts.wait)
        emit("ping", client=c.name, sent_to=to, type=r["type"], from_jid=str(r["from"]), error=None)
    except IqError as e:
        emit("ping", client=c.name, sent_to=to, type="error", from_jid=str(e.iq["from"]),
             error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("%s: no answer to the ping of %s within %gs" % (c.name, to, c.opts.wait))


async def pair(o, clients):
    a = client("a", o, o.a_jid, o.a_password, o.a_addr)
    b = client("b", o, o.b_jid, o.b_password, o.b_addr)
    clients += [a, b]
    await asyncio.gather(a.login(), b.login())
    await asyncio.gather(a.start_im(), b.start_im())
    aj, bj = a.boundjid.bare, b.boundjid.bare

    # Subscriptions, as im.py's subscribe_online, across servers.
    marker(a, "subscribe")
    a.send_presence_subscription(bj)
    await b.wait_presence(lambda p: p["type"] == "subscribe" and slixmpp.JID(p["from"]).bare == aj,
                          "the subscription request of %s" % aj)
    marker(b, "approve_and_subscribe")
    b.send_presence_subscription(aj, ptype="subscribed")
    b.send_presence_subscription(aj)
    await a.wait_presence(lambda p: p["type"] == "subscribed" and slixmpp.JID(p["from"]).bare == bj,
                          "the approval of %s" % bj)
    await a.wait_presence(lambda p: p["type"] == "subscribe" and slixmpp.JID(p["from"]).bare == bj,
                          "the subscription request of %s" % bj)
    marker(a, "approve")
    a.send_presence_subscription(bj, ptype="subscribed")
    for c, peer, other in ((a, bj, b), (b, aj, a)):
        await c.wait_until(lambda c=c, peer=peer: im.subscribed_item(c, peer, "both"),
                           "a roster push of %s with subscription both" % peer)
        emit("subscribed", client=c.name, peer=peer)
        await c.wait_until(lambda c=c, other=other: other.boundjid.full in c.online,
                           "the available presence of %s" % other.boundjid.full)

    # Presence broadcast reaches the contact on the other server.
    marker(a, "status_change")
    a.send_presence(pstatus="a " + o.body)
    b.send_presence(pstatus="b " + o.body)
    for c, other in ((a, b), (b, a)):
        want = "%s %s" % (other.name, o.body)
        await c.wait_presence(lambda p, other=other, want=want: p["from"] == other.boundjid.full and p["status"] == want,
                              "the new status of %s" % other.boundjid.full)
        emit("status_seen", client=c.name, peer=other.boundjid.full, status=want)

    # Messages both ways, to the bare JID.
    for c, other in ((a, b), (b, a)):
        body = "from %s: %s" % (c.name, o.body)
        marker(c, "send_message", to=other.boundjid.bare)
        c.send_message(mto=other.boundjid.bare, mbody=body, mtype="chat")
        await other.wait_until(lambda other=other, body=body: any(m["body"] == body for m in other.messages),
                               "the message of %s" % c.boundjid.bare)

    # An IQ to the other client, through both servers.
    await ping(a, b.boundjid.full)
    await ping(b, a.boundjid.full)

    # A user that does not exist on the other server.
    await wait_bounce(a, o.a_nobody, o.wait)
    await wait_bounce(b, o.b_nobody, o.wait)

    # Anything duplicated would have arrived by now.
    await asyncio.sleep(0.3)
    await a.sync()
    await b.sync()
    a.state(bj)
    b.state(aj)


async def unknown(o, clients):
    a = client("a", o, o.a_jid, o.a_password, o.a_addr)
    clients.append(a)
    await a.login()
    await a.start_im()
    await wait_bounce(a, o.a_nobody, o.wait)


def muc_client(name, o, jid, password, addr):
    """A muc.MUCClient for one side: its own server address; it records
    what comes from --service."""
    co = copy.copy(o)
    co.addr = addr
    return muc.MUCClient(name, jid, password, co)


async def muc_remote(o, clients):
    a = muc_client("a", o, o.a_jid, o.a_password, o.a_addr)
    b = muc_client("b", o, o.b_jid, o.b_password, o.b_addr)
    clients += [a, b]
    await asyncio.gather(a.login(), b.login())
    # b must be available for the invitation, which goes to his bare JID.
    await asyncio.gather(a.initial_presence(), b.initial_presence())
    an, bn = slixmpp.JID(o.a_jid).user, slixmpp.JID(o.b_jid).user
    members, open_, refused = ("%s@%s" % (r, o.service) for r in (o.room, o.room_2, o.room_3))

    def seen(c, occupant, typ):
        return lambda: any(p["from"] == occupant and p["type"] == typ for p in c.muc_presences)

    # Only the service's own users create rooms.
    await b.join_refused("create", refused, bn)
    await a.disco_info(refused, "refused_room")

    await a.create(members, an, {"muc#roomconfig_membersonly": True})
    await a.create(open_, an)

    # An open room: no invitation needed.
    await b.join(open_, bn)
    await a.wait_until(seen(a, open_ + "/" + bn, ""), "%s's presence in %s" % (bn, open_))
    marker(b, "leave", room=open_)
    b["xep_0045"].leave_muc(slixmpp.JID(open_), bn)
    await a.wait_until(seen(a, open_ + "/" + bn, "unavailable"), "%s's exit from %s" % (bn, open_))

    # A members-only room: only when invited.
    await b.join_refused("members_only", members, bn)
    step("a: invite %s to %s" % (o.b_jid, members))
    a["xep_0045"].invite(slixmpp.JID(members), slixmpp.JID(o.b_jid), reason=o.reason)
    await b.wait_muc_message(lambda m: m["from"] == members and m["invite"] is not None, "the invitation")
    await b.join(members, bn)
    await a.wait_until(seen(a, members + "/" + bn, ""), "%s's presence in %s" % (bn, members))

    # Groupchat both ways: both get both.
    for c in (a, b):
        await c.groupchat(members, "%s %s" % (c.name, o.body))
    for c in (a, b):
        for who, nick in (("a", an), ("b", bn)):
            body = "%s %s" % (who, o.body)
            await c.wait_muc_message(lambda m, nick=nick, body=body: m["type"] == "groupchat" and
                                     m["from"] == members + "/" + nick and m["body"] == body,
                                     "%s's groupchat message" % nick)

    # Private messages through the room, both ways.
    for c, other, to in ((a, b, members + "/" + bn), (b, a, members + "/" + an)):
        body = "private %s %s" % (c.name, o.body)
        step("%s: private message to %s" % (c.name, to))
        c.send_message(mto=to, mbody=body, mtype="chat")
        await other.wait_muc_message(lambda m, body=body: m["body"] == body, "the private message of %s" % c.name)

    await a.admin("list_member", members, a["xep_0045"].get_affiliation_list(slixmpp.JID(members), "member",
                                                                             timeout=o.wait))

    # b leaves; both hear of it.
    marker(b, "leave", room=members)
    b["xep_0045"].leave_muc(slixmpp.JID(members), bn)
    await b.wait_until(lambda: any(p["from"] == members + "/" + bn and p["type"] == "unavailable" and 110 in p["codes"]
                                   for p in b.muc_presences), "his own exit from %s" % members)
    await a.wait_until(seen(a, members + "/" + bn, "unavailable"), "%s's exit from %s" % (bn, members))

    # Anything duplicated would have arrived by now.
    await asyncio.sleep(0.3)
    await a.sync()
    await b.sync()


async def nodes(o, clients):
    """Two nodes of one domain (pgfederation_test.go): a logs in on one
    node (--a-addr), b on the remote server; a's message goes out from
    a's node; b's answer comes in at the other node, which has no session
    of a: b's ping of a's full JID comes back as an error, after which
    (same stream, in order) b's message is in offline storage; a then
    logs in again on the other node (--c-addr) and gets it."""
    a = client("a", o, o.a_jid, o.a_password, o.a_addr)
    b = client("b", o, o.b_jid, o.b_password, o.b_addr)
    clients += [a, b]
    await asyncio.gather(a.login(), b.login())
    await asyncio.gather(a.start_im(), b.start_im())
    aj, bj = a.boundjid.bare, b.boundjid.bare

    body_a = "from a: %s" % o.body
    marker(a, "send_message", to=bj)
    a.send_message(mto=bj, mbody=body_a, mtype="chat")
    await b.wait_until(lambda: any(m["body"] == body_a for m in b.messages), "the message of %s" % aj)

    body_b = "from b: %s" % o.body
    marker(b, "send_message", to=aj)
    b.send_message(mto=aj, mbody=body_b, mtype="chat")
    await ping(b, a.boundjid.full)
    await a.sync()
    marker(a, "close")
    await a.close()

    a2 = client("a2", o, o.a_jid, o.a_password, o.c_addr)
    clients.append(a2)
    await a2.login()
    await a2.start_im()
    await a2.wait_until(lambda: any(m["body"] == body_b for m in a2.messages), "the offline message of %s" % bj)
    await a2.sync()


async def subscribe_both(a, b):
    """a asks to subscribe to b, b approves and asks back, a approves:
    both rosters at both, and each sees the other online."""
    aj, bj = a.boundjid.bare, b.boundjid.bare
    marker(a, "subscribe", to=bj)
    a.send_presence_subscription(bj)
    await b.wait_presence(lambda p: p["type"] == "subscribe" and slixmpp.JID(p["from"]).bare == aj,
                          "the subscription request of %s" % aj)
    marker(b, "approve_and_subscribe", to=aj)
    b.send_presence_subscription(aj, ptype="subscribed")
    b.send_presence_subscription(aj)
    await a.wait_presence(lambda p: p["type"] == "subscribed" and slixmpp.JID(p["from"]).bare == bj,
                          "the approval of %s" % bj)
    await a.wait_presence(lambda p: p["type"] == "subscribe" and slixmpp.JID(p["from"]).bare == bj,
                          "the subscription request of %s" % bj)
    marker(a, "approve", to=bj)
    a.send_presence_subscription(bj, ptype="subscribed")
    for c, peer, other in ((a, bj, b), (b, aj, a)):
        await c.wait_until(lambda c=c, peer=peer: im.subscribed_item(c, peer, "both"),
                           "a roster push of %s with subscription both" % peer)
        emit("subscribed", client=c.name, peer=peer)
        await c.wait_presence(lambda p, other=other: p["from"] == other.boundjid.full and p["type"] == "",
                              "the available presence of %s" % other.boundjid.full)


def got(c, body):
    return any(m["body"] == body for m in c.messages)


async def chat_to(c, to, body, *receivers):
    """c sends a chat message to `to`; waits until every receiver has it."""
    marker(c, "send_message", to=to, body=body)
    c.send_message(mto=to, mbody=body, mtype="chat")
    for r in receivers:
        await r.wait_until(lambda r=r: got(r, body), "the message %r of %s" % (body, c.boundjid.full))


async def cluster(o, clients):
    """See "cluster" in the module's doc."""
    alice = client("alice", o, o.alice + "/a", o.password, o.node_a)
    bob = im.IMClient("bob", o.bob + "/b", o.password, _opts(o, o.node_b),
                      plugins=["xep_0030", "xep_0092", "xep_0199"])
    bob["xep_0092"].software_name = "bob on node B"
    carol = im.IMClient("carol", o.carol + "/c", o.password, _opts(o, o.remote),
                        plugins=["xep_0030", "xep_0092", "xep_0199"])
    dan = client("dan", o, o.dan + "/d", o.password, o.remote)
    clients += [alice, bob, carol, dan]
    await asyncio.gather(alice.login(), bob.login(), carol.login(), dan.login())
    await bob.fetch_roster()
    await asyncio.gather(alice.start_im(), bob.initial_presence(ppriority=5), carol.start_im(), dan.start_im())

    # Subscriptions across the servers: carol's requests come in at
    # whichever node her server's stream lands on.
    await subscribe_both(carol, alice)
    await subscribe_both(carol, bob)

    # Status changes both ways.
    carol.send_presence(pstatus="carol " + o.body)
    alice.send_presence(pstatus="alice " + o.body)
    bob.send_presence(pstatus="bob " + o.body, ppriority=5)
    for c, other in ((carol, alice), (carol, bob), (alice, carol), (bob, carol)):
        want = "%s %s" % (other.name, o.body)
        await c.wait_presence(lambda p, other=other, want=want: p["from"] == other.boundjid.full and p["status"] == want,
                              "the new status of %s" % other.boundjid.full)
        emit("status_seen", client=c.name, peer=other.boundjid.full, status=want)

    # Chat both ways, to bare JIDs.
    await chat_to(carol, alice.boundjid.bare, "carol to alice: " + o.body, alice)
    await chat_to(carol, bob.boundjid.bare, "carol to bob: " + o.body, bob)
    await chat_to(alice, carol.boundjid.bare, "alice to carol: " + o.body, carol)
    await chat_to(bob, carol.boundjid.bare, "bob to carol: " + o.body, carol)

    # IQs to full JIDs, answered by the clients.
    step("carol: software version of %s" % bob.boundjid.full)
    try:
        r = await carol["xep_0092"].get_version(bob.boundjid.full, timeout=o.wait)
        emit("version", client="carol", sent_to=bob.boundjid.full, type=r["type"], from_jid=str(r["from"]),
             name=r["software_version"]["name"])
    except IqError as e:
        emit("version", client="carol", sent_to=bob.boundjid.full, type="error", from_jid=str(e.iq["from"]),
             name="", error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("carol: no answer to the version request to %s within %gs" % (bob.boundjid.full, o.wait))
    await ping(carol, alice.boundjid.full)

    # Bare-JID priority across nodes: b (node B) 5, b2 (node A) 1.
    bob2 = client("bob2", o, o.bob + "/b2", o.password, o.node_a)
    clients.append(bob2)
    await bob2.login()
    await bob2.fetch_roster()
    await bob2.initial_presence(ppriority=1)
    await carol.wait_presence(lambda p: p["from"] == bob2.boundjid.full and p["type"] == "" and p["priority"] == "1",
                              "the presence of %s" % bob2.boundjid.full)
    await chat_to(carol, bob.boundjid.bare, "priority 5 on node B: " + o.body, bob)
    bob2.send_presence(ppriority=10)
    await carol.wait_presence(lambda p: p["from"] == bob2.boundjid.full and p["priority"] == "10",
                              "the priority 10 of %s" % bob2.boundjid.full)
    await chat_to(carol, bob.boundjid.bare, "priority 10 on node A: " + o.body, bob2)

    # carol's second resource logs in: her server probes her contacts,
    # and node A, where the probes land, answers for bob's resources on
    # both nodes from the cluster table.
    carol2 = client("carol2", o, o.carol + "/c2", o.password, o.remote)
    clients.append(carol2)
    await carol2.login()
    await carol2.start_im()
    for who, want in ((alice, "alice " + o.body), (bob, "bob " + o.body), (bob2, "")):
        await carol2.wait_presence(lambda p, who=who, want=want: p["from"] == who.boundjid.full and p["type"] == ""
                                   and p["status"] == want, "the presence of %s (probe)" % who.boundjid.full)
        emit("probe_answered", client="carol2", peer=who.boundjid.full)

    # Directed presence to dan, who is not bob's contact.
    marker(bob, "directed_presence", to=dan.boundjid.full)
    bob.send_presence(pto=dan.boundjid.full, pstatus="directed " + o.body, ppriority=5)
    await dan.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["status"] == "directed " + o.body,
                            "the directed presence of %s" % bob.boundjid.full)
    await asyncio.gather(*(c.sync() for c in (alice, bob, bob2)))

    # Node B dies (the Go test kills it).
    with open(o.gate + ".ready", "w") as f:
        f.write("ready\n")
    step("wait for the Go test to kill node B")

    async def gate():
        while not os.path.exists(o.gate):
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(gate(), o.wait * 2)
    except asyncio.TimeoutError:
        fail("the gate was not opened")
    gone = bob.boundjid.full
    for c in (carol, carol2, dan, bob2):
        await c.wait_presence(lambda p: p["from"] == gone and p["type"] == "unavailable",
                              "the unavailable presence of %s" % gone)
        emit("gone_seen", client=c.name, peer=gone)
    await chat_to(carol, bob2.boundjid.bare, "after node B: " + o.body, bob2)

    # Anything duplicated or misrouted would have arrived by now.
    await asyncio.sleep(0.3)
    await asyncio.gather(*(c.sync() for c in (alice, bob2, carol, carol2, dan)))


def _opts(o, addr):
    co = copy.copy(o)
    co.addr = addr
    return co


SCENARIOS = {"pair": pair, "unknown": unknown, "muc": muc_remote, "nodes": nodes, "cluster": cluster}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--cert", required=True, help="PEM file of the certificate authority the servers' certificates chain to")
    p.add_argument("--timeout", type=float, default=25, help="seconds for the whole scenario")
    p.add_argument("--wait", type=float, default=15, help="seconds for each wait for a server")
    p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")
    p.add_argument("--body", default="hello")
    p.add_argument("--c-addr", default="", help="nodes: IP:port of the other node of a's domain")
    p.add_argument("--service", default="", help="muc: the group chat service (of a's server)")
    p.add_argument("--room", default="", help="muc: local part of the members-only room")
    p.add_argument("--room-2", default="", help="muc: local part of the open room")
    p.add_argument("--room-3", default="", help="muc: local part of the room b tries to create")
    p.add_argument("--reason", default="", help="muc: the invitation's reason")
    for who in ("alice", "bob", "carol", "dan"):
        p.add_argument("--" + who, default="", help="cluster: %s's bare JID" % who)
    p.add_argument("--password", default="", help="cluster: every user's password")
    p.add_argument("--node-a", default="", help="cluster: IP:port of node A")
    p.add_argument("--node-b", default="", help="cluster: IP:port of node B")
    p.add_argument("--remote", default="", help="cluster: IP:port of the remote server")
    p.add_argument("--gate", default="", help="cluster: file the Go test creates once node B is dead")
    for side in ("a", "b"):
        p.add_argument("--%s-jid" % side)
        p.add_argument("--%s-password" % side)
        p.add_argument("--%s-addr" % side, help="IP:port of its server (STARTTLS)")
        p.add_argument("--%s-nobody" % side, default="", help="JID that must bounce")
    o = p.parse_args(argv)
    # What slix.Client reads from the options (addr is set per client).
    o.mech = None
    o.direct_tls = False
    o.addr = None
    return o


if __name__ == "__main__":
    slix.run(parse_args(sys.argv[1:]), SCENARIOS)
