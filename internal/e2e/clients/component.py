#!/usr/bin/python3
"""External component scenarios (XEP-0114) for the Go end-to-end tests in
internal/e2e: a user asks an external component (biboumi) for its service
discovery information, and slixmpp's ComponentXMPP exchanges messages with
a user.

Usage: /usr/bin/python3 component.py [common options] SCENARIO [options]

Built on slix.py: the same options, the same JSON lines on stdout (ending
with {"event": "done"}) and the same exit codes.

    disco_info   alice asks disco#info of each --info-to JID and
                 disco#items of her server; events "disco_info" (one per
                 JID: identities, features or the error) and "items"
    chat         a ComponentXMPP for --component-domain (secret
                 --component-secret, at --component-addr) and alice: alice
                 writes to bot@DOMAIN, the component answers her, then
                 tries to send as admin@<alice's domain>; events
                 "component_message", "message" (alice's), "stream_error"
                 and "disconnected" (the component's), "received" (what
                 alice got in all)
"""

import asyncio
import logging
import sys

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import slix
from slix import emit, fail, step, children, local_name

NS_COMPONENT = "jabber:component:accept"
NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"


async def disco_info(o, clients):
    c = slix.Client("alice", o.jid, o.password, o, o.mech)
    clients.append(c)
    await c.login()
    for i, to in enumerate(o.info_to):
        iq_id = "info-%d" % i
        step("alice: disco#info of %s" % to)
        c.send("<iq type='get' id='%s' to='%s'><query xmlns='%s'/></iq>" % (iq_id, to, NS_INFO))
        r = await c.await_iq(iq_id)
        ids, feats = [], []
        if r["type"] == "result":
            q = c.raw_iqs[iq_id].find("{%s}query" % NS_INFO)
            if q is not None:
                for el in q:
                    if local_name(el.tag) == "identity":
                        ids.append({"category": el.get("category", ""), "type": el.get("type", ""), "name": el.get("name", "")})
                    elif local_name(el.tag) == "feature":
                        feats.append(el.get("var", ""))
        emit("disco_info", client=c.name, sent_to=to, type=r["type"], identities=ids,
             features=feats, error=r["error"])
    step("alice: disco#items of the server")
    c.send("<iq type='get' id='items' to='%s'><query xmlns='%s'/></iq>" % (c.boundjid.domain, NS_ITEMS))
    await c.await_iq("items")
    q = c.raw_iqs["items"].find("{%s}query" % NS_ITEMS)
    items = [el.get("jid", "") for el in (q if q is not None else [])]
    emit("items", client=c.name, jids=items)


class Component(slixmpp.ComponentXMPP):
    """A ComponentXMPP that connects to the given address and records
    what happens to it."""

    def __init__(self, domain, secret, addr):
        host, port = addr.rsplit(":", 1)
        super().__init__(domain, secret, host, int(port))
        self.name = "component"
        self.use_aiodns = False
        self.use_ipv6 = False
        self.whitespace_keepalive = False
        self.messages = []
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self.register_handler(Callback("e2e component messages", MatchXPath("{%s}message" % NS_COMPONENT), self._message))
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("stream_error", self._stream_error)
        self.add_event_handler("disconnected", self._disconnected)
        self.add_event_handler("connection_failed", self._connection_failed)

    async def get_dns_records(self, domain, port=None):
        return [(self.server_host, self.server_host, self.server_port)]

    def _message(self, msg):
        body = msg.xml.find("{%s}body" % NS_COMPONENT)
        m = {"from": msg.xml.get("from", ""), "to": msg.xml.get("to", ""),
             "type": msg.xml.get("type", ""), "body": body.text if body is not None and body.text else ""}
        self.messages.append(m)
        emit("component_message", client=self.name, **m)

    def _stream_error(self, err):
        emit("stream_error", client=self.name, conditions=[c for c in children(err.xml) if c != "text"],
             text=err["text"], xml=str(err))

    def _disconnected(self, reason):
        emit("disconnected", client=self.name, reason=str(reason or ""))
        self.gone.set()

    def _connection_failed(self, err):
        emit("connection_failed", client=self.name, error=str(err))
        self.cancel_connection_attempt()
        self.gone.set()

    async def close(self):
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 3)
        except Exception as e:
            logging.getLogger("e2e").debug("component: close: %r", e)


async def chat(o, clients):
    comp = Component(o.component_domain, o.component_secret, o.component_addr)
    clients.append(comp)
    step("component: connect")
    comp.connect()
    await asyncio.wait({asyncio.ensure_future(comp.started.wait()), asyncio.ensure_future(comp.gone.wait())},
                       return_when=asyncio.FIRST_COMPLETED)
    if not comp.started.is_set():
        fail("the component could not connect")
    emit("component_connected", client=comp.name)

    alice = slix.Client("alice", o.jid, o.password, o, o.mech)
    clients.append(alice)
    await alice.login()
    bot = "bot@" + o.component_domain
    step("alice: message to %s" % bot)
    alice.send_message(mto=bot, mbody="to component " + o.body, mtype="chat")
    step("component: wait for alice's message")
    while not any(m["body"] == "to component " + o.body for m in comp.messages):
        await asyncio.sleep(0.01)
    step("component: answer")
    comp.send_message(mto=alice.boundjid.full, mfrom=bot, mbody="from component " + o.body, mtype="chat")
    await alice.wait_message(lambda m: m["body"] == "from component " + o.body, "the component's answer")

    step("component: send as admin@%s" % alice.boundjid.domain)
    comp.send_message(mto=alice.boundjid.full, mfrom="admin@" + alice.boundjid.domain, mbody="spoofed " + o.body, mtype="chat")
    await comp.gone.wait()
    await alice.sync()
    emit("received", client=alice.name, bodies=[m["body"] for m in alice.messages if m["type"] != "error"])


SCENARIOS = {"disco_info": disco_info, "chat": chat}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--info-to", action="append", default=[], help="disco_info: JIDs to ask")
    p.add_argument("--component-addr", default="", help="chat: the component listener, IP:port")
    p.add_argument("--component-domain", default="")
    p.add_argument("--component-secret", default="")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
