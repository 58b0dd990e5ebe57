#!/usr/bin/python3
"""vCard (XEP-0054, XEP-0153; package vcard) and private XML storage
(XEP-0049; package private) scenario for the Go end-to-end tests in
internal/e2e, with slixmpp's xep_0054, xep_0153 and xep_0049 plugins.

Usage: /usr/bin/python3 vcard.py [common options] vcard [options]

Built on slix.py, im.py and blocking.py: the same options and the same
kind of JSON lines on stdout (ending with {"event": "done"}) and exit
codes.

The scenario: bob subscribes to alice's presence; alice (without
xep_0153, so a hash in her presence is the server's) publishes a vCard
with a photo and sends presence; bob (with xep_0153) reports the hash in
her presence and fetches her vCard; alice stores an element in private
XML storage and reads it back.

Events, besides those of slix.py, im.py and blocking.py:

    avatar    a presence with a vcard-temp:x:update photo: from, photo
    vcard     a fetched vCard: fn, photo_type, photo_sha1
    private   the element read back from private storage: nick
"""

import hashlib
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ElementBase

import blocking
import slix
from slix import emit, fail, step

NS_UPDATE = "vcard-temp:x:update"


class Prefs(ElementBase):
    """An element kept in private XML storage."""
    name = "prefs"
    namespace = "urn:treff:e2e:prefs"
    plugin_attrib = "e2e_prefs"
    interfaces = {"nick"}
    sub_interfaces = {"nick"}


class Client(blocking.Client):
    """A blocking.Client that records the avatar hashes in presence."""

    def __init__(self, name, jid, password, opts, plugins=()):
        super().__init__(name, jid, password, opts, plugins)
        self.avatars = []

    def _presence(self, pres):
        super()._presence(pres)
        x = pres.xml.find("{%s}x" % NS_UPDATE)
        photo = x.find("{%s}photo" % NS_UPDATE) if x is not None else None
        if photo is None:
            return
        a = {"from": pres.xml.get("from", ""), "photo": photo.text or ""}
        self.avatars.append(a)
        emit("avatar", client=self.name, **a)


async def vcard(o, clients):
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o, plugins=["xep_0153"])
    clients += [alice, bob]
    for c in clients:
        await c.login()
        await c.start_im()
    a, b = alice.boundjid.bare, bob.boundjid.bare

    step("bob subscribes to alice")
    bob.send_presence_subscription(a)
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == b, "bob's subscription request")
    alice.send_presence_subscription(b, ptype="subscribed")
    await bob.wait_presence(lambda p: p["type"] == "subscribed" and p["from"] == a, "alice's approval")

    photo = bytes(range(256)) * 4
    card = alice["xep_0054"].make_vcard()
    card["FN"] = "Alice " + o.body
    card["PHOTO"]["TYPE"] = "image/png"
    card["PHOTO"]["BINVAL"] = photo
    step("alice: publish vCard")
    try:
        await alice["xep_0054"].publish_vcard(card, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("alice: publishing the vCard failed: %r" % e)
    emit("iq_reply", client="alice", label="publish_vcard", type="result", error=None,
         photo_sha1=hashlib.sha1(photo).hexdigest())

    alice.send_presence(pstatus="with photo")
    await bob.wait_until(lambda: any(x["from"] == alice.boundjid.full for x in bob.avatars),
                         "alice's presence with a photo hash")

    step("bob: fetch alice's vCard")
    try:
        iq = await bob["xep_0054"].get_vcard(a, cached=False, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("bob: fetching alice's vCard failed: %r" % e)
    v = iq["vcard_temp"]
    data = v["PHOTO"]["BINVAL"]
    emit("vcard", client="bob", fn=v["FN"], photo_type=v["PHOTO"]["TYPE"],
         photo_sha1=hashlib.sha1(data).hexdigest() if data else "")

    step("alice: private storage")
    alice["xep_0049"].register(Prefs)
    prefs = Prefs()
    prefs["nick"] = "Al & <Co> " + o.body
    await alice.iq_reply("private_store", alice["xep_0049"].store(prefs, timeout=o.wait))
    iq = await alice.iq_reply("private_retrieve", alice["xep_0049"].retrieve("e2e_prefs", timeout=o.wait))
    emit("private", client="alice", nick=iq["private"]["e2e_prefs"]["nick"])


SCENARIOS = {"vcard": vcard}


if __name__ == "__main__":
    slix.run(blocking.build_parser(SCENARIOS, __doc__).parse_args(sys.argv[1:]), SCENARIOS)
