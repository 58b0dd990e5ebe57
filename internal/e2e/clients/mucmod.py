#!/usr/bin/python3
"""Group chat moderation, retraction and avatar scenarios for the Go
end-to-end tests in internal/e2e: XEP-0425 (moderated message
retraction, urn:xmpp:message-moderate:1), XEP-0424 (message retraction
by the author, urn:xmpp:message-retract:1) with the tombstones they leave
in the room's archive (XEP-0313, read with slixmpp's xep_0313 plugin),
and XEP-0486 room avatars (vcard-temp on the room's JID, set and read
with slixmpp's xep_0054 plugin).

Usage: /usr/bin/python3 mucmod.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py, muc.py and mam.py: the same options (plus
--wait, --service, --room, --third, --reason), the same kind of JSON
lines on stdout (one object per line, ending with {"event": "done"}) and
the same exit codes.

slixmpp 1.8.3 (Debian 12) knows only the :0 namespaces of XEP-0424 and
XEP-0425, so the moderation request and the retraction are built here
with ElementTree and sent with slixmpp (make_iq_set, make_message), and
the notices and tombstones are read from the XML.

Scenarios:

    moderate  alice (--jid) creates --room; bob (--peer) and carol
              (--third) join; bob says --body; carol records its
              stanza-id ("sent"). carol (no moderator) asks to retract
              it, alice asks to retract an unknown id, then alice
              retracts it with --reason ("moderate_reply" each: label,
              type, condition). bob and carol wait for the notice from
              the room ("notice": from, retract id, moderated by,
              reason, stanza-ids). carol then reads the room's archive
              ("archive": every result described).
    retract   alice creates --room, bob joins; bob says "--body 1",
              alice says "--body 2" (stanza-ids recorded: "sent"); bob
              retracts alice's message, then his own (XEP-0424, with a
              fallback body and a store hint); alice waits for both
              ("retraction"); then alice reads the room's archive
              ("archive").
    avatar    alice creates --room (persistent); bob joins; bob tries to
              set the room's vCard ("vcard_set" label bob), alice sets
              one with a PHOTO whose data is "\\x89PNG\\r\\n\\x1a\\n"
              followed by --body ("vcard_set" label alice); bob waits for
              the status 104 message from the room ("config_notice");
              then carol (--third, not in the room) does avatar_get.
    avatar_get carol (--third) asks for the room's disco#info
              ("disco_info", with its roominfo form) and its vCard
              ("vcard": type, SHA-1 of the photo data).
"""

import asyncio
import base64
import hashlib
import sys
import xml.etree.ElementTree as ET

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

import mam
import muc
import slix
from slix import NS_CLIENT, emit, fail, step

NS_RETRACT = "urn:xmpp:message-retract:1"
NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_FALLBACK = "urn:xmpp:fallback:0"
NS_HINTS = "urn:xmpp:hints"
NS_VCARD = "vcard-temp"


def photo_data(body):
    return b"\x89PNG\r\n\x1a\n" + body.encode()


def describe_retract(el):
    """A <retract/> (notice) or <retracted/> (tombstone) element."""
    if el is None:
        return None
    mod = el.find("{%s}moderated" % NS_MODERATE)
    reason = el.find("{%s}reason" % NS_RETRACT)
    return {"id": el.get("id", ""), "stamp": el.get("stamp", ""),
            "moderated_by": mod.get("by", "") if mod is not None else "",
            "reason": (reason.text or "") if reason is not None else ""}


def describe_archived(msg):
    """An archive result: mam.py's description plus the retraction parts
    of the forwarded message."""
    d = mam.describe_result(msg)
    res = msg.xml.find("{%s}result" % mam.NS_MAM)
    inner = res.find("{%s}forwarded/{%s}message" % (mam.NS_FORWARD, NS_CLIENT)) if res is not None else None
    d["has_body"] = inner is not None and inner.find("{%s}body" % NS_CLIENT) is not None
    d["retracted"] = describe_retract(inner.find("{%s}retracted" % NS_RETRACT)) if inner is not None else None
    d["retract"] = describe_retract(inner.find("{%s}retract" % NS_RETRACT)) if inner is not None else None
    return d


class Client(muc.MUCClient):
    """A MUCClient with the archive and vCard plugins, recording the
    stanza-ids of groupchat messages by body and the retractions it
    receives."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts)
        for p in ("xep_0059", "xep_0297", "xep_0203", "xep_0313", "xep_0054"):
            self.register_plugin(p)
        self.stanza_ids = {}
        self.retractions = []

    def _message(self, msg):
        if msg.xml.find("{%s}result" % mam.NS_MAM) is not None:
            return
        super()._message(msg)
        if msg.xml.get("type") != "groupchat":
            return
        sids = [(s.get("by", ""), s.get("id", "")) for s in msg.xml.findall("{%s}stanza-id" % mam.NS_SID)]
        body = msg.xml.find("{%s}body" % NS_CLIENT)
        r = msg.xml.find("{%s}retract" % NS_RETRACT)
        if r is not None:
            d = describe_retract(r)
            d.update({"from": msg.xml.get("from", ""), "stanza_ids": [{"by": b, "id": i} for b, i in sids]})
            self.retractions.append(d)
        elif body is not None:
            self.stanza_ids[body.text or ""] = sids

    async def said(self, room, speaker, body):
        """speaker says body in room; self waits for it and returns the
        stanza-id by the room it carried."""
        speaker.send_message(mto=room, mbody=body, mtype="groupchat")
        await self.wait_until(lambda: body in self.stanza_ids, "groupchat %r" % body)
        ids = [i for b, i in self.stanza_ids[body] if b == room]
        if len(ids) != 1:
            fail("%s: %r arrived with stanza-ids %r" % (self.name, body, self.stanza_ids[body]))
        emit("sent", client=self.name, body=body, stanza_id=ids[0])
        return ids[0]

    async def moderate(self, label, room, target, reason):
        step("%s: moderate %s in %s (%s)" % (self.name, target, room, label))
        iq = self.make_iq_set(ito=room)
        m = ET.Element("{%s}moderate" % NS_MODERATE, {"id": target})
        ET.SubElement(m, "{%s}retract" % NS_RETRACT)
        if reason:
            ET.SubElement(m, "{%s}reason" % NS_MODERATE).text = reason
        iq.append(m)
        try:
            await iq.send(timeout=self.opts.wait)
            emit("moderate_reply", client=self.name, label=label, type="result", condition="")
        except IqError as e:
            emit("moderate_reply", client=self.name, label=label, type="error", condition=e.iq["error"]["condition"])
        except IqTimeout:
            fail("%s: no answer to the moderation request (%s)" % (self.name, label))

    def retract(self, room, target):
        step("%s: retract %s in %s" % (self.name, target, room))
        msg = self.make_message(mto=room, mtype="groupchat", mbody="/me retracted a previous message")
        msg.append(ET.Element("{%s}retract" % NS_RETRACT, {"id": target}))
        msg.append(ET.Element("{%s}fallback" % NS_FALLBACK, {"for": NS_RETRACT}))
        msg.append(ET.Element("{%s}store" % NS_HINTS))
        msg.send()

    async def wait_retraction(self, target, what):
        await self.wait_until(lambda: any(r["id"] == target for r in self.retractions), what)
        return [r for r in self.retractions if r["id"] == target][0]

    async def archive(self, room):
        step("%s: retrieve the archive of %s" % (self.name, room))
        it = self["xep_0313"].retrieve(jid=JID(room), iterator=True, rsm={"max": 50})
        it.iq_options = {"timeout": self.opts.wait}
        results = []
        pages = 0
        async for page in it:
            pages += 1
            if pages > 20:
                fail("more than 20 pages")
            results += [describe_archived(m) for m in page["mam"]["results"]]
        emit("archive", client=self.name, results=results)

    async def set_vcard(self, label, room, body):
        step("%s: set the vCard of %s (%s)" % (self.name, room, label))
        v = self["xep_0054"].make_vcard()
        v["FN"] = "Room " + room
        v["PHOTO"]["TYPE"] = "image/png"
        v["PHOTO"]["BINVAL"] = photo_data(body)
        try:
            await self["xep_0054"].publish_vcard(v, jid=JID(room), timeout=self.opts.wait)
            emit("vcard_set", client=self.name, label=label, type="result", condition="")
        except IqError as e:
            emit("vcard_set", client=self.name, label=label, type="error", condition=e.iq["error"]["condition"])
        except IqTimeout:
            fail("%s: no answer to the vCard set (%s)" % (self.name, label))

    async def get_vcard(self, room):
        step("%s: get the vCard of %s" % (self.name, room))
        try:
            iq = await self["xep_0054"].get_vcard(JID(room), local=False, cached=False, timeout=self.opts.wait)
        except IqError as e:
            fail("%s: vCard of %s refused: %s" % (self.name, room, slix.stanza_error(e.iq.xml)))
        except IqTimeout:
            fail("%s: no vCard of %s" % (self.name, room))
        photo = iq.xml.find("{%s}vCard/{%s}PHOTO" % (NS_VCARD, NS_VCARD))
        typ = photo.findtext("{%s}TYPE" % NS_VCARD) if photo is not None else ""
        binval = photo.findtext("{%s}BINVAL" % NS_VCARD) if photo is not None else ""
        data = base64.b64decode("".join((binval or "").split())) if binval else b""
        emit("vcard", client=self.name, room=room, type=typ or "",
             sha1=hashlib.sha1(data).hexdigest() if data else "")


async def moderate(o, clients):
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    carol = Client("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await muc.login_all(alice, bob, carol)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    await carol.join(room, "carol")
    await carol.disco_info(room, label="room")
    sid = await carol.said(room, bob, o.body)
    await carol.moderate("carol", room, sid, "not mine to remove")
    await alice.moderate("unknown", room, "no-such-stanza-id", "")
    await alice.moderate("alice", room, sid, o.reason)
    for c in (bob, carol):
        n = await c.wait_retraction(sid, "the moderation notice for %s" % sid)
        emit("notice", client=c.name, **n)
    await carol.archive(room)


async def retract(o, clients):
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await muc.login_all(alice, bob)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    bobs = await alice.said(room, bob, o.body + " 1")
    alices = await bob.said(room, alice, o.body + " 2")
    bob.retract(room, alices)
    emit("retraction", client=alice.name, **(await alice.wait_retraction(alices, "bob's retraction of alice's message")))
    bob.retract(room, bobs)
    emit("retraction", client=alice.name, **(await alice.wait_retraction(bobs, "bob's retraction of his message")))
    await alice.archive(room)


async def avatar_get(o, clients, carol=None):
    if carol is None:
        carol = Client("carol", o.third, o.third_password, o)
        clients.append(carol)
        await carol.login()
    room = muc.room_jid(o, o.room)
    await carol.disco_info(room, label="room")
    await carol.get_vcard(room)


async def avatar(o, clients):
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    carol = Client("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await muc.login_all(alice, bob, carol)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_persistentroom": True})
    await bob.join(room, "bob")
    await bob.set_vcard("bob", room, "not the owner")
    start = len(bob.muc_messages)
    await alice.set_vcard("alice", room, o.body)
    await bob.wait_until(lambda: any(104 in m["codes"] and m["from"] == room for m in bob.muc_messages[start:]),
                         "the status 104 notice")
    emit("config_notice", client=bob.name, **[m for m in bob.muc_messages[start:] if 104 in m["codes"]][0])
    await avatar_get(o, clients, carol)


SCENARIOS = {"moderate": moderate, "retract": retract, "avatar": avatar, "avatar_get": avatar_get}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--third", default="", help="the third account (carol)")
    p.add_argument("--third-password", default="")
    p.add_argument("--room", default="", help="local part of the room")
    p.add_argument("--reason", default="", help="the moderator's reason")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
