#!/usr/bin/python3
"""Blocking scenario (XEP-0191, package blocking) for the Go end-to-end
tests in internal/e2e, with slixmpp's xep_0191 plugin. vcard.py, built on
this file, adds the vCard (XEP-0054, XEP-0153) and private storage
(XEP-0049) scenario.

Usage: /usr/bin/python3 blocking.py [common options] blocking [options]

Built on slix.py and im.py: the same options (plus --wait, the bound of
every wait for the server, and --third/--third-password for mallory),
the same kind of JSON lines on stdout (one object per line, ending with
{"event": "done"}) and the same exit codes.

The scenario: bob (two resources, both fetch the block list) blocks
mallory; mallory writes to bob's bare and full JID and sends bob a
disco#info query; alice then writes to bob (the control message that
shows the stream still works); bob writes to mallory; bob's second
resource unblocks mallory and mallory writes again.

Events, besides slix.py's and im.py's (message, presence):

    blocklist     a block list as fetched: jids
    push          a block or unblock push a client got: kind, jids
    received      what a client got up to a point: bodies, errors (each
                  with its defined conditions and app, the application
                  conditions as {namespace}name)
    iq_reply      the reply to an IQ: label, type, error
"""

import asyncio
import sys

from slixmpp.exceptions import IqError, IqTimeout

import im
import slix
from slix import NS_CLIENT, NS_STANZAS, emit, fail, step


def app_conditions(xml):
    """The application-specific conditions of a stanza's <error/>."""
    err = xml.find("{%s}error" % NS_CLIENT)
    if err is None:
        return []
    return [c.tag for c in err if not c.tag.startswith("{%s}" % NS_STANZAS)]


class Client(im.IMClient):
    """An IMClient with the blocking, vCard and private storage plugins
    that records block list pushes and the application conditions of the
    errors it gets."""

    def __init__(self, name, jid, password, opts, plugins=()):
        super().__init__(name, jid, password, opts,
                         plugins=["xep_0030", "xep_0191", "xep_0054", "xep_0049", *plugins])
        self.pushes = []
        self.add_event_handler("blocked", lambda iq: self._push("block", iq))
        self.add_event_handler("unblocked", lambda iq: self._push("unblock", iq))

    def _push(self, kind, iq):
        jids = sorted(str(j) for j in iq[kind]["items"])
        self.pushes.append((kind, jids))
        emit("push", client=self.name, kind=kind, jids=jids)

    def _message(self, msg):
        super()._message(msg)
        if self.messages[-1]["error"] is not None:
            self.messages[-1]["error"]["app"] = app_conditions(msg.xml)

    async def iq_reply(self, label, fut):
        """Awaits an IQ sent with a plugin and reports its reply."""
        step("%s: %s" % (self.name, label))
        try:
            iq = await fut
            r = {"type": iq["type"], "error": None}
        except IqError as e:
            r = {"type": "error", "error": slix.stanza_error(e.iq.xml)}
            iq = e.iq
        except IqTimeout:
            fail("%s: %s: no reply within %gs" % (self.name, label, self.opts.wait))
        emit("iq_reply", client=self.name, label=label, **r)
        return iq

    def report(self, name=None):
        emit("received", client=name or self.name,
             bodies=[m["body"] for m in self.messages if m["type"] != "error"],
             errors=[{"from": m["from"], "id": m["id"], **(m["error"] or {})} for m in self.messages if m["type"] == "error"])


async def blocking(o, clients):
    bob1 = Client("bob1", o.peer + "/one", o.peer_password, o)
    bob2 = Client("bob2", o.peer + "/two", o.peer_password, o)
    alice = Client("alice", o.jid, o.password, o)
    mallory = Client("mallory", o.third, o.third_password, o)
    clients += [bob1, bob2, alice, mallory]
    await asyncio.gather(*(c.login() for c in clients))
    await asyncio.gather(*(c.initial_presence() for c in clients))
    bob, mal = bob1.boundjid.bare, mallory.boundjid.bare

    for c in (bob1, bob2):
        iq = await c.iq_reply("blocklist", c["xep_0191"].get_blocked(timeout=o.wait))
        emit("blocklist", client=c.name, jids=sorted(str(j) for j in iq["blocklist"]["items"]))
    await bob1.iq_reply("block", bob1["xep_0191"].block(mal, timeout=o.wait))
    for c in (bob1, bob2):
        await c.wait_until(lambda c=c: ("block", [mal]) in c.pushes, "the block push")

    step("mallory: write to bob")
    mallory.send_message(mto=bob, mbody="blocked to bare " + o.body, mtype="chat")
    mallory.send_message(mto=bob1.boundjid.full, mbody="blocked to full " + o.body, mtype="chat")
    await mallory.iq_reply("disco_bob", mallory["xep_0030"].get_info(jid=bob1.boundjid.full, timeout=o.wait))
    await mallory.sync()
    step("alice: control message")
    alice.send_message(mto=bob1.boundjid.full, mbody="control " + o.body, mtype="chat")
    await bob1.wait_message(lambda m: m["body"] == "control " + o.body, "alice's control message")
    await bob2.sync()
    for c in (bob1, bob2, mallory):
        c.report()

    step("bob: write to mallory")
    bob1.send_message(mto=mal, mbody="to blocked " + o.body, mtype="chat")
    await bob1.wait_message(lambda m: m["type"] == "error", "the error for his message to mallory")
    await mallory.sync()
    bob1.report("bob1_after_send")
    mallory.report("mallory_after_send")

    await bob2.iq_reply("unblock", bob2["xep_0191"].unblock(mal, timeout=o.wait))
    for c in (bob1, bob2):
        await c.wait_until(lambda c=c: ("unblock", [mal]) in c.pushes, "the unblock push")
    mallory.send_message(mto=bob1.boundjid.full, mbody="unblocked " + o.body, mtype="chat")
    await bob1.wait_message(lambda m: m["body"] == "unblocked " + o.body, "mallory's message after unblock")
    iq = await bob1.iq_reply("blocklist_after", bob1["xep_0191"].get_blocked(timeout=o.wait))
    emit("blocklist", client="bob1_after", jids=sorted(str(j) for j in iq["blocklist"]["items"]))


SCENARIOS = {"blocking": blocking}


def build_parser(scenarios, doc):
    p = slix.build_parser(scenarios, doc)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--third", default="", help="the third account (mallory)")
    p.add_argument("--third-password", default="")
    return p


if __name__ == "__main__":
    slix.run(build_parser(SCENARIOS, __doc__).parse_args(sys.argv[1:]), SCENARIOS)
