#!/usr/bin/python3
"""Push notification scenarios (XEP-0357) for the Go end-to-end test
internal/e2e/push_test.go: Treff's example server notifies an app server
that is Prosody's pubsub component, over server-to-server streams.

Usage: /usr/bin/python3 push.py [options] SCENARIO

Built on slix.py and im.py (the same JSON lines and exit codes). Three
clients: "alice" and "bob" on Treff (--alice-jid, --bob-jid, --treff-addr)
and "watcher" on Prosody (--watcher-jid, --prosody-addr), which stands for
the app server's back end: it subscribes to the push node --node on the
pubsub service --service and reports every item published there. All use
--password and trust --cert. slixmpp 1.8.3 (Debian) has no XEP-0357
plugin: alice enables push with the IQ of XEP-0357 section 5 built here.

Scenarios:

    offline  watcher subscribes; alice checks her account's disco#info for
             urn:xmpp:push:0, enables push (jid=--service, node=--node)
             and logs out; bob sends her a chat message (--body); watcher
             waits for the notification.
    arm      alice logs in with resumable stream management, enables push
             and sends presence, then loses her connection without closing
             her stream (transport.abort()): her session hibernates. The
             Go test waits until the server says so.
    wake     watcher subscribes; bob sends alice (hibernating) a chat
             message (--body); watcher waits for the notification.

Events besides slix.py's:

    account_features  alice's account disco#info features
    push_enabled      the answer to <enable/>: type, error
    subscribed        watcher's subscription to the node
    notification      an item published to the node: the summary form's
                      fields (field name to first value) and the
                      publisher as Prosody reports it, if it does
"""

import argparse
import asyncio
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

import im
import slix
from im import marker
from slix import emit, fail, step

NS_PUSH = "urn:xmpp:push:0"
NS_DATA = "jabber:x:data"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"


class Watcher(im.IMClient):
    """The app server's back end: records the notifications published to
    the node."""

    def __init__(self, o):
        co = slix_opts(o, o.prosody_addr)
        super().__init__("watcher", o.watcher_jid, o.password, co, plugins=["xep_0030", "xep_0004", "xep_0060"])
        self.notifications = []
        self.add_event_handler("pubsub_publish", self._published)

    def _published(self, msg):
        item = msg["pubsub_event"]["items"]["item"]
        fields = {}
        for n in item.xml.iter("{%s}notification" % NS_PUSH):
            for f in n.iter("{%s}field" % NS_DATA):
                v = f.find("{%s}value" % NS_DATA)
                fields[f.get("var", "")] = v.text if v is not None else ""
        note = {"node": msg["pubsub_event"]["items"]["node"], "fields": fields,
                "publisher": item.xml.get("publisher", "")}
        self.notifications.append(note)
        emit("notification", client=self.name, **note)

    async def subscribe_node(self, service, node):
        """Creates the node, open to any publisher, unless it exists, and
        subscribes to it."""
        ps = self["xep_0060"]
        form = self["xep_0004"].make_form("submit")
        form.add_field("FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
        form.add_field("pubsub#publish_model", value="open")
        form.add_field("pubsub#access_model", value="open")
        step("watcher: create %s on %s" % (node, service))
        try:
            await ps.create_node(service, node, config=form, timeout=self.opts.wait)
        except IqError as e:
            if "conflict" not in slix.stanza_error(e.iq.xml)["conditions"]:
                fail("watcher: creating the node: %r" % slix.stanza_error(e.iq.xml))
        except IqTimeout:
            fail("watcher: no answer to the node's creation")
        step("watcher: subscribe to %s" % node)
        try:
            r = await ps.subscribe(service, node, timeout=self.opts.wait)
        except (IqError, IqTimeout) as e:
            fail("watcher: subscribing: %r" % e)
        emit("subscribed", client=self.name, subscription=r["pubsub"]["subscription"]["subscription"])

    async def wait_notification(self, before, what):
        await self.wait_until(lambda: len(self.notifications) > before, what)


def slix_opts(o, addr):
    co = argparse.Namespace(**vars(o))
    co.addr = addr
    return co


async def enable_push(c, o):
    features = []
    try:
        info = await c["xep_0030"].get_info(jid=c.boundjid.bare, timeout=o.wait)
        features = list(info["disco_info"].get_features(dedupe=False))
    except (IqError, IqTimeout) as e:
        fail("%s: disco#info of the account: %r" % (c.name, e))
    emit("account_features", client=c.name, features=features)
    iq = c.Iq(stype="set")
    en = ET.SubElement(iq.xml, "{%s}enable" % NS_PUSH)
    en.set("jid", o.service)
    en.set("node", o.node)
    step("%s: enable push" % c.name)
    try:
        r = await iq.send(timeout=o.wait)
        emit("push_enabled", client=c.name, type=r["type"], error=None)
    except IqError as e:
        emit("push_enabled", client=c.name, type="error", error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("%s: no answer to <enable/>" % c.name)


async def bob_writes(o, clients):
    bob = im.IMClient("bob", o.bob_jid, o.password, slix_opts(o, o.treff_addr))
    clients.append(bob)
    await bob.login()
    marker(bob, "send", body=o.body)
    bob.send_message(mto=o.alice_jid, mbody=o.body, mtype="chat")
    await bob.sync()


async def offline(o, clients):
    w = Watcher(o)
    alice = im.IMClient("alice", o.alice_jid, o.password, slix_opts(o, o.treff_addr), plugins=["xep_0030"])
    clients += [w, alice]
    await asyncio.gather(w.login(), alice.login())
    await w.initial_presence()
    await w.subscribe_node(o.service, o.node)
    await enable_push(alice, o)
    step("alice: log out")
    await alice.close()
    marker(alice, "logged_out")
    before = len(w.notifications)
    await bob_writes(o, clients)
    await w.wait_notification(before, "a notification of bob's message to alice, offline")


async def arm(o, clients):
    alice = im.IMClient("alice", o.alice_jid, o.password, slix_opts(o, o.treff_addr),
                        plugins=["xep_0030", "xep_0198"])
    clients.append(alice)
    enabled = asyncio.Event()
    alice.add_event_handler("sm_enabled", lambda _: enabled.set())
    await alice.login()
    step("alice: stream management")
    await asyncio.wait_for(enabled.wait(), o.wait)
    await enable_push(alice, o)
    await alice.initial_presence()
    marker(alice, "connection_lost")
    alice.transport.abort()


async def wake(o, clients):
    w = Watcher(o)
    clients.append(w)
    await w.login()
    await w.initial_presence()
    await w.subscribe_node(o.service, o.node)
    before = len(w.notifications)
    await bob_writes(o, clients)
    await w.wait_notification(before, "a notification of bob's message to alice, hibernating")


SCENARIOS = {"offline": offline, "arm": arm, "wake": wake}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--cert", required=True, help="PEM file of the certificate authority the servers' certificates chain to")
    p.add_argument("--timeout", type=float, default=25)
    p.add_argument("--wait", type=float, default=15)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--body", default="hello")
    p.add_argument("--password", required=True)
    p.add_argument("--alice-jid", required=True)
    p.add_argument("--bob-jid", required=True)
    p.add_argument("--watcher-jid", required=True)
    p.add_argument("--treff-addr", required=True)
    p.add_argument("--prosody-addr", required=True)
    p.add_argument("--service", required=True, help="the app server: Prosody's pubsub component")
    p.add_argument("--node", required=True)
    o = p.parse_args(argv)
    o.mech = None
    o.direct_tls = False
    o.addr = None
    return o


if __name__ == "__main__":
    slix.run(parse_args(sys.argv[1:]), SCENARIOS)
