#!/usr/bin/python3
"""Personal eventing scenarios (XEP-0163, package pep) for the Go
end-to-end tests in internal/e2e: OMEMO device lists and bundles
(XEP-0384) published with publish-options, notifications filtered by
entity capabilities (XEP-0115 +notify), the last item on presence,
access models, avatars (XEP-0084) and bookmarks (XEP-0402).

Usage: /usr/bin/python3 pep.py [common options] SCENARIO [scenario options]

Built on slix.py and im.py: the same options (plus --wait, the bound of
every wait for the server, and --third/--third-password for carol), the
same kind of JSON lines on stdout (one object per line, ending with
{"event": "done"}) and the same exit codes.

Clients load slixmpp's xep_0030, xep_0060, xep_0115, xep_0163 and
xep_0084; interest in a node is declared with xep_0163's add_interest
(a NODE+notify disco feature, which changes the client's caps), and the
caps are recomputed before the initial presence is sent, so that the
server sees them in it. Publishing goes through xep_0163's publish with a
xep_0004 publish-options form, avatars through xep_0084's publish_avatar,
publish_avatar_metadata and retrieve_avatar, items through xep_0060's
get_items.

Events, besides slix.py's and im.py's:

    pep_event     a pubsub#event message as it arrived: from, the node,
                  the items (id and serialised payload) and retractions
    publish_reply the reply to a publication (label, type, error)
    items_reply   the reply to an items request (label, node, type,
                  error with its pubsub#errors conditions, items)
    avatar        what retrieve_avatar got: the item id, the data's
                  SHA-1, its length
"""

import asyncio
import hashlib
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET, tostring
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import im
import slix
from slix import NS_CLIENT, emit, fail, step

NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_OMEMO = "eu.siacs.conversations.axolotl"
DEVICELIST = NS_OMEMO + ".devicelist"
BUNDLES = NS_OMEMO + ".bundles:12345"
NS_NICK = "http://jabber.org/protocol/nick"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"


class PEPClient(im.IMClient):
    """An IMClient with the PEP plugins that records pubsub events."""

    def __init__(self, name, jid, password, opts, interests=()):
        super().__init__(name, jid, password, opts,
                         plugins=("xep_0004", "xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0084"))
        self.interests = list(interests)
        self.events = []
        self.register_handler(Callback("e2e pep events",
                                       MatchXPath("{%s}message/{%s}event" % (NS_CLIENT, NS_EVENT)), self._event))

    def _event(self, msg):
        ev = msg.xml.find("{%s}event" % NS_EVENT)
        for items in ev.findall("{%s}items" % NS_EVENT):
            e = {
                "from": msg.xml.get("from", ""),
                "to": msg.xml.get("to", ""),
                "type": msg.xml.get("type", ""),
                "node": items.get("node", ""),
                "items": [{"id": it.get("id", ""), "payload": "".join(tostring(c) for c in it)}
                          for it in items.findall("{%s}item" % NS_EVENT)],
                "retracts": [r.get("id", "") for r in items.findall("{%s}retract" % NS_EVENT)],
            }
            self.events.append(e)
            emit("pep_event", client=self.name, **e)

    async def go_online(self):
        """Login, interests (+notify features), caps, roster, presence."""
        await self.login()
        for ns in self.interests:
            self["xep_0030"].add_feature("%s+notify" % ns)
        step("%s: update caps" % self.name)
        await self["xep_0115"].update_caps(broadcast=False)
        await self.start_im()

    async def wait_event(self, node, what):
        await self.wait_until(lambda: any(e["node"] == node and e["items"] for e in self.events), what)
        return next(e for e in self.events if e["node"] == node and e["items"])

    async def publish(self, label, payload, node=None, item_id=None, options=None):
        """Publishes with publish-options given as a dict; emits the reply."""
        form = None
        if options:
            form = self["xep_0004"].make_form(ftype="submit")
            form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
            for k, v in options.items():
                form.add_field(var=k, value=v)
        step("%s: publish %s" % (self.name, label))
        try:
            await self["xep_0163"].publish(payload, node=node, id=item_id, options=form, timeout=self.opts.wait)
            emit("publish_reply", client=self.name, label=label, type="result", error=None)
        except IqError as e:
            emit("publish_reply", client=self.name, label=label, type="error", error=pubsub_error(e.iq.xml))
        except IqTimeout:
            fail("%s: no reply to publish %s" % (self.name, label))

    async def items(self, label, jid, node):
        step("%s: items %s" % (self.name, label))
        r = {"label": label, "node": node}
        try:
            iq = await self["xep_0060"].get_items(jid, node, timeout=self.opts.wait)
            r["type"] = "result"
            r["error"] = None
            its = iq.xml.find("{%s}pubsub/{%s}items" % (NS_PUBSUB, NS_PUBSUB))
            r["items"] = [{"id": it.get("id", ""), "payload": "".join(tostring(c) for c in it)}
                          for it in (its if its is not None else [])]
        except IqError as e:
            r.update(type="error", error=pubsub_error(e.iq.xml), items=[])
        except IqTimeout:
            fail("%s: no reply to items %s" % (self.name, label))
        emit("items_reply", client=self.name, **r)
        return r


def pubsub_error(xml):
    """slix.stanza_error plus the pubsub#errors conditions."""
    e = slix.stanza_error(xml) or {"type": "", "conditions": [], "text": ""}
    err = xml.find("{%s}error" % NS_CLIENT)
    if err is not None:
        e["conditions"] += [slix.local_name(c.tag) for c in err if c.tag.startswith("{%s}" % NS_ERRORS)]
    return e


def element(tag, **attrs):
    el = ET.Element(tag)
    for k, v in attrs.items():
        el.set(k, v)
    return el


class Raw:
    """A payload for xep_0163.publish: an element with its namespace."""

    def __init__(self, xml, namespace):
        self.xml = xml
        self.namespace = namespace


async def subscribe_both(alice, bob):
    """alice and bob subscribe to each other (im.py's handshake)."""
    a, b = alice.boundjid.bare, bob.boundjid.bare
    alice.send_presence_subscription(b)
    await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == a, "alice's subscription request")
    bob.send_presence_subscription(a, ptype="subscribed")
    bob.send_presence_subscription(a)
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == b, "bob's subscription request")
    alice.send_presence_subscription(b, ptype="subscribed")
    for c, peer in ((alice, b), (bob, a)):
        await c.wait_until(lambda c=c, peer=peer: im.subscribed_item(c, peer, "both"), "subscription both with %s" % peer)
    await alice.sync()
    await bob.sync()


# --- scenarios ------------------------------------------------------------

async def omemo(o, clients):
    """alice and bob become mutual contacts; bob's client is interested in
    OMEMO device lists. alice publishes her device list (open, item
    'current') and a bundle: bob is notified, carol (no interest, not a
    contact) is not but fetches the open device list, and is refused
    alice's nickname (presence access model). bob logs out; his next
    login gets the device list as the last item on presence. alice
    publishes an avatar (data and metadata): bob is notified of the
    metadata and retrieves the data. alice's bookmarks (whitelist) are
    refused to bob."""
    alice = PEPClient("alice", o.jid, o.password, o)
    bob = PEPClient("bob", o.peer + "/laptop", o.peer_password, o, interests=[DEVICELIST])
    carol = PEPClient("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await asyncio.gather(alice.go_online(), bob.go_online(), carol.go_online())
    await subscribe_both(alice, bob)
    a = alice.boundjid.bare

    dl = element("{%s}list" % NS_OMEMO)
    dl.append(element("{%s}device" % NS_OMEMO, id="12345"))
    await alice.publish("devicelist", Raw(dl, NS_OMEMO), node=DEVICELIST, item_id="current",
                        options={"pubsub#access_model": "open"})
    bundle = element("{%s}bundle" % NS_OMEMO)
    ET.SubElement(bundle, "{%s}signedPreKeyPublic" % NS_OMEMO, signedPreKeyId="1").text = "BQ=="
    ET.SubElement(bundle, "{%s}identityKey" % NS_OMEMO).text = "BQ=="
    await alice.publish("bundle", Raw(bundle, NS_OMEMO), node=BUNDLES, item_id="current",
                        options={"pubsub#access_model": "open"})
    # Same node, other access model: a precondition that is not met.
    await alice.publish("devicelist_presence", Raw(dl, NS_OMEMO), node=DEVICELIST, item_id="current",
                        options={"pubsub#access_model": "presence"})
    nick = element("{%s}nick" % NS_NICK)
    nick.text = "Alice"
    await alice.publish("nick", Raw(nick, NS_NICK))
    await bob.wait_event(DEVICELIST, "alice's device list")

    await carol.items("carol_devicelist", a, DEVICELIST)
    await carol.items("carol_bundle", a, BUNDLES)
    await carol.items("carol_nick", a, NS_NICK)
    await bob.items("bob_nick", a, NS_NICK)
    # Anything for carol or bob would have been queued before these.
    await alice.sync()
    await carol.sync()
    await bob.sync()
    emit("received_events", client="carol", count=len(carol.events))

    step("bob: log out")
    await bob.close()
    bob2 = PEPClient("bob2", o.peer + "/phone", o.peer_password, o, interests=[DEVICELIST])
    clients.append(bob2)
    await bob2.go_online()
    await bob2.wait_event(DEVICELIST, "the device list on presence")

    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    avatar_id = hashlib.sha1(data).hexdigest()
    step("alice: publish avatar data")
    try:
        await alice["xep_0084"].publish_avatar(data, timeout=o.wait)
        await alice["xep_0084"].publish_avatar_metadata(
            {"id": avatar_id, "type": "image/png", "bytes": len(data), "width": "16", "height": "16"}, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("alice: avatar publication failed: %r" % e)
    await bob2.wait_event("urn:xmpp:avatar:metadata", "alice's avatar metadata")
    step("bob2: retrieve avatar")
    try:
        iq = await bob2["xep_0084"].retrieve_avatar(a, avatar_id, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("bob2: avatar retrieval failed: %r" % e)
    got = iq["pubsub"]["items"]["item"]["avatar_data"]["value"]
    emit("avatar", client="bob2", id=iq["pubsub"]["items"]["item"]["id"],
         sha1=hashlib.sha1(got).hexdigest(), bytes=len(got), want_sha1=avatar_id)

    conf = element("{%s}conference" % NS_BOOKMARKS, name="Lounge", autojoin="true")
    ET.SubElement(conf, "{%s}nick" % NS_BOOKMARKS).text = "Al"
    await alice.publish("bookmark", Raw(conf, NS_BOOKMARKS), node=NS_BOOKMARKS, item_id="lounge@conference.localhost",
                        options={"pubsub#access_model": "whitelist", "pubsub#persist_items": "true",
                                 "pubsub#max_items": "max", "pubsub#send_last_published_item": "never"})
    await alice.items("alice_bookmarks", a, NS_BOOKMARKS)
    await bob2.items("bob_bookmarks", a, NS_BOOKMARKS)
    await bob2.sync()


SCENARIOS = {"omemo": omemo}

if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--third", default="", help="the third account (carol)")
    p.add_argument("--third-password", default="")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
