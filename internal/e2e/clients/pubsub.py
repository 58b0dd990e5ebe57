#!/usr/bin/python3
"""Publish-subscribe scenarios (XEP-0060: the service on pubsub.DOMAIN and
explicit subscriptions to PEP nodes, package pep) for the Go end-to-end
tests in internal/e2e, driven by slixmpp's xep_0060 plugin, with
xep_0059's result set iterator for paging items.

Usage: /usr/bin/python3 pubsub.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py and pep.py: the same options (plus --wait, the
bound of every wait for the server, and --third/--third-password for
carol), the same kind of JSON lines on stdout (one object per line, ending
with {"event": "done"}) and the same exit codes.

Events, besides those of slix.py, im.py and pep.py (pep_event):

    reply       the reply to a request: label, type (result or error),
                error (with its pubsub#errors conditions), xml (of a
                result)
    disco       what disco#items of the host and disco#info of the
                service returned: items (JIDs), identities
                (category/type), features
    rsm_pages   the item IDs of each page of slixmpp's XEP-0059 iterator
                over a node (pages of 2)
    counted     how many notifications a client got from a node, after
                a round trip (label, count)
"""

import argparse
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0059.stanza import Set
from slixmpp.plugins.xep_0060.stanza import Pubsub
from slixmpp.xmlstream import ET, register_stanza_plugin, tostring

import pep
import slix
from slix import emit, fail, step

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_REPORTING = "urn:xmpp:reporting:1"
RTBL = "muc_bans_sha256"
FEED = "urn:example:feed"
PRIVATE = "urn:example:private"


class Client(pep.PEPClient):
    """A PEPClient with XEP-0059 result sets on pubsub requests (slixmpp
    1.8 registers them on disco#items only)."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts)
        self.register_plugin("xep_0059")
        register_stanza_plugin(Pubsub, Set)

    async def call(self, label, request):
        """Awaits an IQ request; emits the reply; returns the result or
        None."""
        step("%s: %s" % (self.name, label))
        try:
            iq = await request
        except IqError as e:
            emit("reply", client=self.name, label=label, type="error", error=pep.pubsub_error(e.iq.xml), xml="")
            return None
        except IqTimeout:
            fail("%s: no reply to %s" % (self.name, label))
        emit("reply", client=self.name, label=label, type="result", error=None, xml=tostring(iq.xml))
        return iq

    def events_from(self, sender, node):
        return [e for e in self.events if e["from"] == sender and e["node"] == node]


def report():
    """An RTBL item's payload (as xmppbl.org publishes them)."""
    return ET.Element("{%s}report" % NS_REPORTING, reason="urn:xmpp:reporting:spam")


def form(client, fields, form_type=None):
    f = client["xep_0004"].make_form(ftype="submit")
    if form_type:
        f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for k, v in fields.items():
        f.add_field(var=k, value=v)
    return f


# --- scenarios ------------------------------------------------------------

async def service(o, clients):
    """alice, bob and carol, not contacts. alice finds pubsub.DOMAIN in
    the host's disco#items and creates a block list node on it (open,
    publish model publishers); bob subscribes; alice publishes five
    items, which bob gets as notifications; carol's publication is
    refused. bob fetches the two newest items with max_items, then all
    of them in pages of two with slixmpp's RSM iterator, lists his
    subscriptions, unsubscribes and gets no more notifications."""
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer + "/laptop", o.peer_password, o)
    carol = Client("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    for c in (alice, bob, carol):
        await c.go_online()
    domain = alice.boundjid.domain
    svc = "pubsub." + domain

    step("alice: disco")
    try:
        items = await alice["xep_0030"].get_items(jid=domain, timeout=o.wait)
        info = await alice["xep_0030"].get_info(jid=svc, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("alice: disco failed: %r" % e)
    emit("disco", client="alice", items=[i[0] for i in items["disco_items"]["items"]],
         identities=["%s/%s" % (i[0], i[1]) for i in info["disco_info"]["identities"]],
         features=sorted(info["disco_info"]["features"]))

    await alice.call("create", alice["xep_0060"].create_node(
        svc, RTBL, config=form(alice, {"pubsub#access_model": "open", "pubsub#publish_model": "publishers",
                                       "pubsub#max_items": "100"}), timeout=o.wait))
    await bob.call("subscribe", bob["xep_0060"].subscribe(svc, RTBL, timeout=o.wait))
    for i in range(1, 6):
        await alice.call("publish%d" % i, alice["xep_0060"].publish(
            svc, RTBL, id="hash%d" % i, payload=report(), timeout=o.wait))
    await bob.wait_until(lambda: len(bob.events_from(svc, RTBL)) >= 5, "five notifications from the service")
    await carol.call("carol_publish", carol["xep_0060"].publish(svc, RTBL, id="evil", payload=report(), timeout=o.wait))

    await bob.call("max_items", bob["xep_0060"].get_items(svc, RTBL, max_items=2, timeout=o.wait))
    step("bob: page the items")
    iq = bob.Iq(sto=svc, stype="get")
    iq["pubsub"]["items"]["node"] = RTBL
    pages = []
    async for page in bob["xep_0059"].iterate(iq, "pubsub", amount=2, iq_options={"timeout": o.wait}):
        its = page.xml.find("{%s}pubsub/{%s}items" % (NS_PUBSUB, NS_PUBSUB))
        pages.append([it.get("id", "") for it in (its if its is not None else [])])
        if len(pages) > 10:
            fail("bob: the result set does not end")
    emit("rsm_pages", client="bob", pages=pages)

    await bob.call("subscriptions", bob["xep_0060"].get_subscriptions(svc, timeout=o.wait))
    await bob.call("unsubscribe", bob["xep_0060"].unsubscribe(svc, RTBL, timeout=o.wait))
    await alice.call("publish6", alice["xep_0060"].publish(svc, RTBL, id="hash6", payload=report(), timeout=o.wait))
    # Anything for bob was queued before the answer to this.
    await bob.sync()
    emit("counted", client="bob", label="after_unsubscribe", count=len(bob.events_from(svc, RTBL)))


async def pep_subscribe(o, clients):
    """alice publishes on her PEP nodes: FEED (open) and PRIVATE
    (presence). carol, not a contact and without +notify interest,
    subscribes to FEED explicitly, is refused PRIVATE, gets alice's next
    FEED item as a notification from alice's bare JID and lists her
    subscriptions there. alice's account's disco#info lists the
    subscription features."""
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer + "/laptop", o.peer_password, o)
    carol = Client("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    for c in (alice, bob, carol):
        await c.go_online()
    a = alice.boundjid.bare
    opts = "http://jabber.org/protocol/pubsub#publish-options"
    await alice.call("publish_feed", alice["xep_0060"].publish(
        a, FEED, id="1", payload=report(), options=form(alice, {"pubsub#access_model": "open"}, opts), timeout=o.wait))
    await alice.call("publish_private", alice["xep_0060"].publish(a, PRIVATE, id="1", payload=report(), timeout=o.wait))

    # (The account answers disco#info to its owner and contacts only.)
    step("alice: disco#info of her account")
    try:
        info = await alice["xep_0030"].get_info(jid=a, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("alice: disco failed: %r" % e)
    emit("disco", client="alice", items=[], identities=["%s/%s" % (i[0], i[1]) for i in info["disco_info"]["identities"]],
         features=sorted(info["disco_info"]["features"]))

    await carol.call("subscribe_feed", carol["xep_0060"].subscribe(a, FEED, timeout=o.wait))
    await carol.call("subscribe_private", carol["xep_0060"].subscribe(a, PRIVATE, timeout=o.wait))
    await alice.call("publish_feed2", alice["xep_0060"].publish(a, FEED, id="2", payload=report(), timeout=o.wait))
    await carol.wait_until(lambda: any(it["id"] == "2" for e in carol.events_from(a, FEED) for it in e["items"]),
                           "alice's feed item")
    await carol.call("subscriptions", carol["xep_0060"].get_subscriptions(a, timeout=o.wait))
    await carol.sync()
    emit("counted", client="carol", label="private", count=len(carol.events_from(a, PRIVATE)))


async def federation(o, clients):
    """alice on Treff (--jid, --addr) creates a block list node on the
    service (--service); watcher, on another server (--peer,
    --peer-password, --peer-addr), subscribes to it over server-to-server
    streams; alice publishes an item, which watcher gets from the
    service; watcher fetches the newest item too."""
    alice = Client("alice", o.jid, o.password, o)
    wo = argparse.Namespace(**vars(o))
    wo.addr = o.peer_addr
    watcher = Client("watcher", o.peer, o.peer_password, wo)
    clients += [alice, watcher]
    for c in (alice, watcher):
        await c.go_online()
    svc = o.service
    await alice.call("create", alice["xep_0060"].create_node(svc, RTBL, timeout=o.wait))
    await watcher.call("subscribe", watcher["xep_0060"].subscribe(svc, RTBL, timeout=o.wait))
    await alice.call("publish", alice["xep_0060"].publish(svc, RTBL, id="hash1", payload=report(), timeout=o.wait))
    await watcher.wait_until(lambda: any(it["id"] == "hash1" for e in watcher.events_from(svc, RTBL) for it in e["items"]),
                             "the notification from the service")
    await watcher.call("items", watcher["xep_0060"].get_items(svc, RTBL, max_items=1, timeout=o.wait))


SCENARIOS = {"service": service, "pep": pep_subscribe, "federation": federation}

if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--third", default="", help="the third account (carol)")
    p.add_argument("--third-password", default="")
    p.add_argument("--peer-addr", default="", help="the peer's server (federation)")
    p.add_argument("--service", default="", help="the pubsub service (federation)")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
