#!/usr/bin/python3
"""Group chat scenarios for communities (package muc, issue 18) for the
Go end-to-end tests in internal/e2e: two sessions of one account under
one nickname (XEP-0045 7.2.9), XEP-0421 occupant-ids, the history a
newcomer gets, and a room that outlives a restart of the server.

Usage: /usr/bin/python3 muccommunity.py [common options] SCENARIO [scenario options]

Built on muc.py (slixmpp's xep_0045 plugin for joining, leaving,
configuring and the subject): the same options and the same JSON lines,
plus

    occupant_id   the occupant-id (XEP-0421) of a presence or message
                  from the service: kind, from, type, id (null if none),
                  body (messages), delay (whether it has one)
    marker        a point of the scenario (name)
    archived      a result of a query of the room's archive (XEP-0313,
                  slixmpp's xep_0313): from, body (null if none), the
                  forwarded message's occupant-id (null if none), whether
                  it has a chat state
"""

import asyncio
import sys

import xml.etree.ElementTree as ET

from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import im
import mam
import muc
import slix
from slix import NS_CLIENT, emit, step

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_HINTS = "urn:xmpp:hints"


class Client(muc.MUCClient):
    """A MUCClient that also reports the occupant-id of every presence
    and message from the group chat service."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts)
        self.occupant_ids = []
        for kind in ("presence", "message"):
            self.register_handler(Callback("e2e occupant-id " + kind, MatchXPath("{%s}%s" % (NS_CLIENT, kind)),
                                           lambda st, kind=kind: self._occupant_id(kind, st)))

    def _occupant_id(self, kind, st):
        xml = st.xml
        if not self._from_service(xml):
            return
        oid = xml.find("{%s}occupant-id" % NS_OCCUPANT_ID)
        body = xml.find("{%s}body" % NS_CLIENT)
        d = {"kind": kind, "from": xml.get("from", ""), "type": xml.get("type", ""),
             "id": oid.get("id") if oid is not None else None,
             "body": (body.text or "") if body is not None else None,
             "delay": xml.find("{%s}delay" % muc.NS_DELAY) is not None}
        self.occupant_ids.append(d)
        emit("occupant_id", client=self.name, **d)

    async def leave(self, room, nick):
        step("%s: leave %s" % (self.name, room))
        full = "%s/%s" % (room, nick)
        start = len(self.muc_presences)
        self["xep_0045"].leave_muc(JID(room), nick)
        await self.wait_until(lambda: any(p["from"] == full and p["type"] == "unavailable" and 110 in p["codes"]
                                          for p in self.muc_presences[start:]), "the exit from %s" % room)

    async def said(self, room, body):
        """Sends a groupchat message and waits for its reflection."""
        await self.groupchat(room, body)
        await self.wait_muc_message(lambda m: m["type"] == "groupchat" and m["body"] == body,
                                    "the reflection of %r" % body)

    def chat_state(self, room, hint):
        """Sends a groupchat chat state (XEP-0085) with a XEP-0334 hint."""
        step("%s: chat state with <%s/> to %s" % (self.name, hint, room))
        m = self.make_message(mto=room, mtype="groupchat")
        ET.SubElement(m.xml, "{%s}composing" % NS_CHATSTATES)
        ET.SubElement(m.xml, "{%s}%s" % (NS_HINTS, hint))
        m.send()


# --- scenarios ------------------------------------------------------------

async def sessions(o, clients):
    """alice creates --room (instant); bob joins as bob; a second session
    of alice's account (alice2) joins as alice; bob's groupchat message
    and his private message to ROOM/alice reach both of alice's sessions;
    alice2 speaks; alice2 leaves (bob must hear nothing: marker
    phone_left, after bob's own message came back), then alice leaves
    (bob hears it) and joins again."""
    alice = Client("alice", o.jid, o.password, o)
    alice2 = Client("alice2", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    clients += [alice, alice2, bob]
    await muc.login_all(alice, alice2, bob)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    await alice2.join(room, "alice")

    body = "to both " + o.body
    await bob.said(room, body)
    for c in (alice, alice2):
        await c.wait_muc_message(lambda m: m["from"] == room + "/bob" and m["body"] == body, "bob's message")
    step("bob: private message to %s/alice" % room)
    bob.send_message(mto=room + "/alice", mbody="private " + o.body, mtype="chat")
    for c in (alice, alice2):
        await c.wait_muc_message(lambda m: m["from"] == room + "/bob" and m["body"] == "private " + o.body,
                                 "bob's private message")
    body2 = "from the second session " + o.body
    await alice2.said(room, body2)
    await bob.wait_muc_message(lambda m: m["from"] == room + "/alice" and m["body"] == body2, "alice2's message")
    await alice.wait_muc_message(lambda m: m["body"] == body2, "alice2's message")

    await alice2.leave(room, "alice")
    await bob.said(room, "after the phone left " + o.body)
    await alice.wait_muc_message(lambda m: m["body"] == "after the phone left " + o.body, "bob's second message")
    im.marker(bob, "phone_left")

    await alice.leave(room, "alice")
    await bob.wait_until(lambda: any(p["from"] == room + "/alice" and p["type"] == "unavailable"
                                     for p in bob.muc_presences), "alice's exit")
    im.marker(bob, "rejoin")
    start = len(bob.muc_presences)
    await alice.join(room, "alice")
    await bob.wait_until(lambda: any(p["from"] == room + "/alice" and p["type"] == ""
                                     for p in bob.muc_presences[start:]), "alice back")
    await alice.sync()
    await bob.sync()


async def keep_before(o, clients):
    """alice creates --room with the default configuration (temporary);
    bob joins; alice sets --subject; alice and bob send --count messages
    each; alice sends a chat state with <no-store/>; then "ready", and
    both stay until the server closes their streams."""
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await muc.login_all(alice, bob)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    step("alice: set the subject")
    alice["xep_0045"].set_subject(JID(room), o.subject)
    await bob.wait_muc_message(lambda m: m["subject"] == o.subject, "the subject")
    for i in range(o.count):
        await alice.said(room, "alice %d %s" % (i, o.body))
        await bob.said(room, "bob %d %s" % (i, o.body))
    alice.chat_state(room, "no-store")
    await alice.said(room, "last " + o.body)
    emit("ready")
    step("wait for the server to stop")
    for c in (alice, bob):
        while c.disconnects == 0:
            c.outcome_changed.clear()
            await c.outcome_changed.wait()


async def keep_after(o, clients):
    """After the restart: bob looks at --room's disco#info, joins (the
    room's history and subject come as join_muc_wait collects them), and
    alice joins (she is still the owner)."""
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await muc.login_all(alice, bob)
    room = muc.room_jid(o, o.room)
    await bob.disco_info(room, "after")
    await bob.join(room, "bob")
    await alice.join(room, "alice")
    await alice.sync()
    await bob.sync()


async def archived(o, clients):
    """With archives on: alice creates --room (instant) and sends a
    message, a chat state with <no-store/> and another message; bob, who
    never entered the room (open, so he may read its archive), retrieves
    the archive with slixmpp's xep_0313."""
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    for c in (alice, bob):
        for p in ("xep_0059", "xep_0297", "xep_0203", "xep_0313"):
            c.register_plugin(p)
    clients += [alice, bob]
    await muc.login_all(alice, bob)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice")
    await alice.said(room, "first " + o.body)
    alice.chat_state(room, "no-store")
    await alice.said(room, "second " + o.body)
    step("bob: retrieve the archive of %s" % room)
    try:
        page = await bob["xep_0313"].retrieve(jid=JID(room), timeout=o.wait)
    except Exception as e:
        slix.fail("bob: archive of %s: %r" % (room, e))
    for m in page["mam"]["results"]:
        fwd = m.xml.find("{%s}result/{%s}forwarded/{%s}message" % (mam.NS_MAM, mam.NS_FORWARD, NS_CLIENT))
        if fwd is None:
            continue
        body = fwd.find("{%s}body" % NS_CLIENT)
        oid = fwd.find("{%s}occupant-id" % NS_OCCUPANT_ID)
        emit("archived", client=bob.name, **{"from": fwd.get("from", ""),
             "body": (body.text or "") if body is not None else None,
             "occupant_id": oid.get("id") if oid is not None else None,
             "chat_state": any(ch.tag.startswith("{%s}" % NS_CHATSTATES) for ch in fwd)})


SCENARIOS = {
    "archived": archived,
    "sessions": sessions,
    "keep_before": keep_before,
    "keep_after": keep_after,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--room", default="", help="local part of the room")
    p.add_argument("--subject", default="", help="keep_before: the subject alice sets")
    p.add_argument("--count", type=int, default=2, help="keep_before: messages each sends")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
