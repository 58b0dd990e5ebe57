#!/usr/bin/python3
"""Migration scenarios (XEP-0227; package pie, community import and
export) for the Go end-to-end tests in internal/e2e: the same clients
fill accounts on one server (Prosody, ejabberd, Treff) and, after the
export and import, check them on Treff.

Usage: /usr/bin/python3 migrate.py [common options] SCENARIO [options]

Built on slix.py and im.py: the same options, the same kind of JSON lines
on stdout (ending with {"event": "done"}) and exit codes.

Scenarios:

    populate  alice names bob "Bobby" in the group "Friends" and they
              subscribe to each other (both); carol (--third) asks alice,
              who does not answer; alice sets her vCard (FN --body) and
              keeps an element in private XML storage; with --pep she
              publishes a nickname (XEP-0172) on her PEP node; with
              --offline-to bob sends that account (which never logged
              in) a message the server stores.
    check     alice and bob log in with their old passwords; alice gets
              her roster, her vCard, her private element (and with --pep
              her nickname's PEP items), then sends
              presence and reports the subscription requests the server
              delivers (carol's, pending); bob gets his roster; with
              --offline-to that account logs in and gets bob's message.

Events, besides those of slix.py and im.py:

    populated the accounts are filled
    state     client, roster (the items as the server sent them)
    vcard     client, fn
    private   client, nick
    pending   client, from: a subscription request delivered after
              initial presence
    pep       client, nicks: the items of the nickname node
    offline   client, body, from: the stored message, delivered
"""

import asyncio
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

import im
import slix
from slix import emit, fail, step

NS_ROSTER = "jabber:iq:roster"
NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
NS_PREFS = "urn:treff:e2e:prefs"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_NICK = "http://jabber.org/protocol/nick"
OFFLINE_BODY = "while you were away"


async def send_iq(c, iq, what):
    step("%s: %s" % (c.name, what))
    try:
        return await iq.send(timeout=c.opts.wait)
    except IqError as e:
        fail("%s: %s: error reply %s" % (c.name, what, e.iq))
    except IqTimeout:
        fail("%s: %s: no reply within %gs" % (c.name, what, c.opts.wait))


async def populate(o, clients):
    alice = im.IMClient("alice", o.jid, o.password, o)
    bob = im.IMClient("bob", o.peer, o.peer_password, o)
    carol = im.IMClient("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await asyncio.gather(alice.login(), bob.login(), carol.login())
    await asyncio.gather(alice.start_im(), bob.start_im())
    a, b = alice.boundjid.bare, bob.boundjid.bare

    iq = alice.Iq(stype="set")
    q = ET.SubElement(iq.xml, "{%s}query" % NS_ROSTER)
    it = ET.SubElement(q, "{%s}item" % NS_ROSTER, jid=b, name="Bobby")
    ET.SubElement(it, "{%s}group" % NS_ROSTER).text = "Friends"
    await send_iq(alice, iq, "roster set of bob")

    alice.send_presence_subscription(b)
    await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == a, "alice's subscription request")
    bob.send_presence_subscription(a, ptype="subscribed")
    bob.send_presence_subscription(a)
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == b, "bob's subscription request")
    alice.send_presence_subscription(b, ptype="subscribed")
    for c, peer in ((alice, b), (bob, a)):
        await c.wait_until(lambda c=c, peer=peer: im.subscribed_item(c, peer, "both"),
                           "a roster push of %s with subscription both" % peer)

    # carol asks; alice does not answer: the request stays pending.
    carol.send_presence_subscription(a)
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == carol.boundjid.bare,
                              "carol's subscription request")

    iq = alice.Iq(stype="set")
    v = ET.SubElement(iq.xml, "{%s}vCard" % NS_VCARD)
    ET.SubElement(v, "{%s}FN" % NS_VCARD).text = o.body
    ET.SubElement(v, "{%s}NICKNAME" % NS_VCARD).text = "al"
    await send_iq(alice, iq, "vCard set")

    iq = alice.Iq(stype="set")
    q = ET.SubElement(iq.xml, "{%s}query" % NS_PRIVATE)
    prefs = ET.SubElement(q, "{%s}prefs" % NS_PREFS)
    ET.SubElement(prefs, "{%s}nick" % NS_PREFS).text = "rabbit & co"
    await send_iq(alice, iq, "private XML set")
    if o.offline_to:
        # Never logged in: the server stores it.
        bob.send_message(mto=o.offline_to, mbody=OFFLINE_BODY, mtype="chat")
    if o.pep:
        iq = alice.Iq(stype="set")
        pub = ET.SubElement(ET.SubElement(iq.xml, "{%s}pubsub" % NS_PUBSUB), "{%s}publish" % NS_PUBSUB, node=NS_NICK)
        ET.SubElement(ET.SubElement(pub, "{%s}item" % NS_PUBSUB, id="current"), "{%s}nick" % NS_NICK).text = "Alice"
        await send_iq(alice, iq, "PEP publish of a nickname")
    for c in (alice, bob, carol):
        await c.sync()
    emit("populated")


async def check(o, clients):
    alice = im.IMClient("alice", o.jid, o.password, o)
    bob = im.IMClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    await asyncio.gather(alice.fetch_roster(), bob.fetch_roster())
    for c in (alice, bob):
        emit("state", client=c.name, roster=list(c.server_roster.values()))

    iq = alice.Iq(stype="get")
    ET.SubElement(iq.xml, "{%s}vCard" % NS_VCARD)
    r = await send_iq(alice, iq, "vCard get")
    fn = r.xml.find("{%s}vCard/{%s}FN" % (NS_VCARD, NS_VCARD))
    emit("vcard", client=alice.name, fn=fn.text if fn is not None else None)

    iq = alice.Iq(stype="get")
    q = ET.SubElement(iq.xml, "{%s}query" % NS_PRIVATE)
    ET.SubElement(q, "{%s}prefs" % NS_PREFS)
    r = await send_iq(alice, iq, "private XML get")
    nick = r.xml.find("{%s}query/{%s}prefs/{%s}nick" % (NS_PRIVATE, NS_PREFS, NS_PREFS))
    emit("private", client=alice.name, nick=nick.text if nick is not None else None)

    if o.pep:
        iq = alice.Iq(stype="get", sto=alice.boundjid.bare)
        ET.SubElement(ET.SubElement(iq.xml, "{%s}pubsub" % NS_PUBSUB), "{%s}items" % NS_PUBSUB, node=NS_NICK)
        r = await send_iq(alice, iq, "PEP items of the nickname node")
        nicks = r.xml.findall("{%s}pubsub/{%s}items/{%s}item/{%s}nick" % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB, NS_NICK))
        emit("pep", client=alice.name, nicks=[n.text for n in nicks])

    if o.offline_to:
        erin = im.IMClient("erin", o.offline_to, o.offline_password, o)
        clients.append(erin)
        await erin.login()
        await erin.initial_presence()
        m = await erin.wait_message(lambda m: m["body"] == OFFLINE_BODY, "the offline message")
        emit("offline", client=erin.name, body=m["body"], **{"from": m["from"]})

    # RFC 6121 3.1.3: a pending request is delivered again when the
    # contact sends initial presence.
    await alice.initial_presence()
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == o.third,
                              "the pending subscription request of %s" % o.third)
    emit("pending", client=alice.name, **{"from": o.third})


SCENARIOS = {"populate": populate, "check": check}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--third", default="", help="carol's JID")
    p.add_argument("--third-password", default="")
    p.add_argument("--offline-to", default="", help="populate: bob sends this JID (never logged in) a message; check: it logs in and gets it")
    p.add_argument("--offline-password", default="")
    p.add_argument("--pep", action="store_true", help="populate: alice publishes a nickname (XEP-0172) with PEP; check: reads it")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
