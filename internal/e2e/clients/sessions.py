#!/usr/bin/python3
"""One account, several sessions: scenarios for the Go end-to-end tests
in internal/e2e (sessions_test.go) on message carbons (XEP-0280), stream
management with resumption (XEP-0198) and client state indication
(XEP-0352), through slixmpp's xep_0280, xep_0198 and xep_0352 plugins.

Usage: /usr/bin/python3 sessions.py [common options] SCENARIO [scenario options]

Built on slix.py and im.py: the same options (plus --wait, --away and
--hold), the same kind of JSON lines on stdout (one object per line,
ending with {"event": "done"}) and the same exit codes. The account in
--jid logs in as resources "phone" and "laptop" (the client names); --peer
is "bob".

Scenarios:

    carbons    phone and laptop enable carbons; bob writes to the phone,
               the laptop to bob, both with and without <private/>; bob
               writes to alice's bare JID
    sm_resume  the phone (stream management, carbons) loses its
               connection and resumes it within the window
    sm_expire  the phone stays away longer than the window (--away)
    csi        the phone says <inactive/> while bob changes his status

Events besides those of slix.py and im.py, in the order things happened
(all clients share one event loop):

    message          every <message/> received, with what it carries:
                     carbon (a carbons <sent/> or <received/> wrapper),
                     private, no_copy, chat_state, delay
    carbon           a carbon slixmpp's xep_0280 accepted (its
                     carbon_received or carbon_sent event): the wrapper's
                     addresses and the forwarded message's (inner_*);
                     inner_ns_ok says the forwarded message was in
                     jabber:client
    carbons_enabled  the answer to xep_0280's enable()
    server_features  the server's disco#info features
    sm_enabled       <enabled/> (id, resume, max)
    sm_resumed       slixmpp's session_resumed event (<resumed/>)
    sm_failed        slixmpp's sm_failed event (<failed/>)
    session_start    slixmpp's session_start event (a bound resource)
    csi              whether the server offered <csi/>
    marker           a point of the scenario the Go test orders on
    summary          a client's counts at the end

slixmpp 1.8.3 traps met here: its xep_0198 empties its queue of
unacknowledged stanzas when it sends <resume/>, so every resumption logs
"Inconsistent sequence numbers from the server" (harmless), and it does
not count stanzas sent as strings (the sync IQs) while the server does;
its abort() closes the TLS layer first (a close_notify), so a lost
connection is made with transport.abort(); xep_0352's send_inactive and
send_active go out with send_raw (they overtake stanzas still queued) and
do nothing unless the server offered <csi/>. And a server trait: an IQ
answer to an inactive client flushes what was held before it (to keep the
order), so the csi scenario makes no round trip of the phone's own while
something should be held.
"""

import asyncio
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

import im
import slix
from im import marker
from slix import NS_CLIENT, emit, fail, step

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_DELAY = "urn:xmpp:delay"


def text(xml, tag):
    el = xml.find("{%s}%s" % (NS_CLIENT, tag))
    return (el.text or "") if el is not None else None


class Device(im.IMClient):
    """An IMClient that also reports carbons, stream management and what
    each message carries."""

    def __init__(self, name, jid, password, opts, plugins=()):
        super().__init__(name, jid, password, opts, plugins=plugins)
        self.carbons = []       # dicts of the carbon events
        self.session_starts = 0
        self.sm = []            # "enabled", "resumed", "failed" in turn
        self.csi_offered = False
        self.add_event_handler("carbon_received", lambda m: self._carbon("received", m))
        self.add_event_handler("carbon_sent", lambda m: self._carbon("sent", m))
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("sm_enabled", self._sm_enabled)
        self.add_event_handler("session_resumed", self._sm_resumed)
        self.add_event_handler("sm_failed", self._sm_failed)
        self.add_event_handler("csi_enabled", self._csi)

    # --- recorders ------------------------------------------------------

    def _message(self, msg):
        xml = msg.xml
        state = ""
        for c in xml:
            if c.tag.startswith("{%s}" % NS_CHATSTATES):
                state = slix.local_name(c.tag)
        m = {
            "from": xml.get("from", ""),
            "to": xml.get("to", ""),
            "type": xml.get("type", ""),
            "id": xml.get("id", ""),
            "body": text(xml, "body") or "",
            "error": slix.stanza_error(xml),
            "carbon": xml.find("{%s}sent" % NS_CARBONS) is not None or xml.find("{%s}received" % NS_CARBONS) is not None,
            "private": xml.find("{%s}private" % NS_CARBONS) is not None,
            "no_copy": xml.find("{%s}no-copy" % NS_HINTS) is not None,
            "chat_state": state,
            "delay": xml.find("{%s}delay" % NS_DELAY) is not None,
        }
        self.messages.append(m)
        emit("message", client=self.name, **m)

    def _carbon(self, direction, msg):
        xml = msg.xml
        wrap = xml.find("{%s}%s" % (NS_CARBONS, direction))
        fwd = wrap.find("{%s}forwarded" % NS_FORWARD) if wrap is not None else None
        inner = fwd.find("{%s}message" % NS_CLIENT) if fwd is not None else None
        c = {
            "dir": direction,
            "from": xml.get("from", ""),
            "to": xml.get("to", ""),
            "type": xml.get("type", ""),
            "inner_ns_ok": inner is not None,
            "inner_from": inner.get("from", "") if inner is not None else "",
            "inner_to": inner.get("to", "") if inner is not None else "",
            "inner_type": inner.get("type", "") if inner is not None else "",
            "body": (text(inner, "body") or "") if inner is not None else "",
        }
        self.carbons.append(c)
        emit("carbon", client=self.name, **c)

    def _started(self, _):
        self.session_starts += 1
        emit("session_start", client=self.name, jid=self.boundjid.full, n=self.session_starts)

    def _sm_enabled(self, st):
        self.sm.append("enabled")
        emit("sm_enabled", client=self.name, id=st.xml.get("id", ""), resume=st.xml.get("resume", ""),
             max=st.xml.get("max", ""))

    def _sm_resumed(self, st):
        self.sm.append("resumed")
        emit("sm_resumed", client=self.name, previd=st.xml.get("previd", ""), h=st.xml.get("h", ""))

    def _sm_failed(self, st):
        self.sm.append("failed")
        emit("sm_failed", client=self.name, conditions=slix.children(st.xml))

    def _csi(self, _):
        self.csi_offered = True

    # --- actions --------------------------------------------------------

    async def enable_carbons(self):
        step("%s: enable carbons" % self.name)
        try:
            r = await self["xep_0280"].enable(timeout=self.opts.wait)
            emit("carbons_enabled", client=self.name, type=r["type"])
        except IqError as e:
            emit("carbons_enabled", client=self.name, type="error", error=slix.stanza_error(e.iq.xml))
        except IqTimeout:
            fail("%s: no answer to <enable/>" % self.name)

    async def server_features(self):
        step("%s: disco#info of the server" % self.name)
        try:
            info = await self["xep_0030"].get_info(jid=self.boundjid.domain, timeout=self.opts.wait)
        except (IqError, IqTimeout) as e:
            fail("%s: disco#info failed: %r" % (self.name, e))
        emit("server_features", client=self.name, features=list(info["disco_info"].get_features(dedupe=False)))

    def send_chat(self, to, body, private=False, mtype="chat", state=None):
        """A message; private adds <private/> and the <no-copy/> hint
        (XEP-0280 section 7), state a chat state (with or without a
        body)."""
        m = self.make_message(mto=to, mbody=body, mtype=mtype)
        if state:
            ET.SubElement(m.xml, "{%s}%s" % (NS_CHATSTATES, state))
        if private:
            ET.SubElement(m.xml, "{%s}private" % NS_CARBONS)
            ET.SubElement(m.xml, "{%s}no-copy" % NS_HINTS)
        m.send()

    async def wait_body(self, body):
        await self.wait_until(lambda: any(m["body"] == body for m in self.messages), "the message %r" % body)

    async def wait_carbon(self, body):
        await self.wait_until(lambda: any(c["body"] == body for c in self.carbons), "the carbon of %r" % body)

    async def wait_sm(self, what):
        await self.wait_until(lambda: what in self.sm, "stream management %s" % what)

    async def cut(self):
        """Loses the connection as a dead network would: the socket is
        closed without </stream:stream> (and without a TLS close_notify)."""
        step("%s: cut the connection" % self.name)
        before = self.disconnects
        self.transport.abort()
        await self.wait_until(lambda: self.disconnects > before, "the disconnection")

    def reconnect(self):
        """Connects again; slixmpp's xep_0198 tries to resume with the
        stream management id it kept."""
        step("%s: reconnect" % self.name)
        host, port = self.opts.addr.rsplit(":", 1)
        self.connect((host, int(port)))

    def summary(self):
        emit("summary", client=self.name, jid=self.boundjid.full, connects=self.connects,
             disconnects=self.disconnects, session_starts=self.session_starts, sm=self.sm,
             carbons=len(self.carbons), messages=len(self.messages))


def alice(o, res, plugins):
    return Device(res, slixmpp.JID(o.jid).bare + "/" + res, o.password, o, plugins=plugins)


async def finish(*cs):
    """Round trips for every client, then a pause: anything still on its
    way (a late duplicate, a carbon too many) would arrive meanwhile."""
    for c in cs:
        await c.sync()
    await asyncio.sleep(0.3)
    for c in cs:
        await c.sync()
        c.summary()


# --- scenarios ------------------------------------------------------------

async def carbons(o, clients):
    """alice's phone and laptop enable carbons (xep_0280), all go online.
    bob writes to alice/phone (the laptop gets a received carbon); the
    laptop writes to bob (the phone gets a sent carbon); bob writes to
    alice/phone and the laptop to bob with <private/> (no carbons, and the
    recipient gets it without <private/>); bob writes to alice's bare JID
    (both get it, no carbons). Headline fences from bob to each resource
    end it: carbons come right after the message they copy, so any carbon
    too many arrives before the fence."""
    phone = alice(o, "phone", ["xep_0280"])
    laptop = alice(o, "laptop", ["xep_0280"])
    bob = Device("bob", o.peer, o.peer_password, o)
    clients += [phone, laptop, bob]
    await asyncio.gather(phone.login(), laptop.login(), bob.login())
    await phone.server_features()
    for c in (phone, laptop):
        await c.enable_carbons()
    for c in (phone, laptop, bob):
        await c.initial_presence()
    a = phone.boundjid.bare

    marker(bob, "to_phone")
    bob.send_chat(phone.boundjid.full, "to phone " + o.body)
    await phone.wait_body("to phone " + o.body)
    await laptop.wait_carbon("to phone " + o.body)

    marker(laptop, "from_laptop")
    laptop.send_chat(bob.boundjid.bare, "from laptop " + o.body)
    await bob.wait_body("from laptop " + o.body)
    await phone.wait_carbon("from laptop " + o.body)

    marker(bob, "private")
    bob.send_chat(phone.boundjid.full, "private to phone " + o.body, private=True)
    await phone.wait_body("private to phone " + o.body)
    laptop.send_chat(bob.boundjid.bare, "private from laptop " + o.body, private=True)
    await bob.wait_body("private from laptop " + o.body)

    marker(bob, "bare")
    bob.send_chat(a, "to both " + o.body)
    await phone.wait_body("to both " + o.body)
    await laptop.wait_body("to both " + o.body)

    await bob.sync()
    await laptop.sync()
    marker(bob, "fences")
    for c in (phone, laptop):
        bob.send_chat(c.boundjid.full, "fence " + c.name, mtype="headline")
    for c in (phone, laptop):
        await c.wait_body("fence " + c.name)
    await finish(phone, laptop, bob)


async def sm_login(o, clients, carbons=False):
    """alice/phone with stream management (xep_0198, resumption asked)
    and bob, both online; with carbons, the phone enables them and
    alice/laptop is online too."""
    phone = alice(o, "phone", ["xep_0198", "xep_0280"] if carbons else ["xep_0198"])
    bob = Device("bob", o.peer, o.peer_password, o)
    cs = [phone, bob]
    if carbons:
        cs.append(alice(o, "laptop", []))
    clients += cs
    await asyncio.gather(*(c.login() for c in cs))
    await phone.wait_sm("enabled")
    if carbons:
        await phone.enable_carbons()
    for c in cs:
        await c.initial_presence()
    return cs


async def sm_resume(o, clients):
    """The phone (carbons enabled) loses its connection (no stream end);
    meanwhile bob writes to alice/phone and alice/laptop writes to bob;
    the phone reconnects within the resumption window, resumes
    (<resumed/>) and gets bob's message and the sent carbon of the
    laptop's once. The laptop writes to bob again: the resumed session
    still has carbons enabled."""
    phone, bob, laptop = await sm_login(o, clients, carbons=True)
    marker(phone, "cut")
    await phone.cut()
    await asyncio.sleep(o.away)
    marker(bob, "send_while_away")
    bob.send_chat(phone.boundjid.full, "while away " + o.body)
    laptop.send_chat(bob.boundjid.bare, "laptop while away " + o.body)
    await bob.wait_body("laptop while away " + o.body)
    await bob.sync()
    marker(phone, "reconnect")
    phone.reconnect()
    await phone.wait_until(lambda: "resumed" in phone.sm or "failed" in phone.sm, "<resumed/> or <failed/>")
    if "resumed" not in phone.sm:
        fail("phone: resumption refused")
    await phone.wait_body("while away " + o.body)
    await phone.wait_carbon("laptop while away " + o.body)
    marker(laptop, "after_resume")
    laptop.send_chat(bob.boundjid.bare, "laptop after resume " + o.body)
    await phone.wait_carbon("laptop after resume " + o.body)
    await finish(phone, laptop, bob)


async def sm_expire(o, clients):
    """The phone's connection drops; bob writes to alice/phone; the phone
    stays away --away seconds (longer than the server's resumption
    window), then reconnects: the resumption fails, slixmpp binds a new
    session, and the message, stored offline, arrives after its initial
    presence."""
    phone, bob = await sm_login(o, clients)
    marker(phone, "cut")
    await phone.cut()
    await asyncio.sleep(0.3)
    marker(bob, "send_while_away")
    bob.send_chat(phone.boundjid.full, "while away " + o.body)
    await bob.sync()
    step("phone: away for %gs" % o.away)
    await asyncio.sleep(o.away)
    marker(phone, "reconnect")
    phone.reconnect()
    await phone.wait_until(lambda: phone.session_starts >= 2 or "resumed" in phone.sm, "a new session")
    if "resumed" in phone.sm:
        fail("phone: resumed after the resumption window")
    await phone.initial_presence()
    await phone.wait_body("while away " + o.body)
    await finish(phone, bob)


async def csi(o, clients):
    """alice/phone (xep_0352) subscribes to bob's presence. The phone
    says <inactive/>; bob changes his status twice ("one", "two"): nothing
    reaches the phone for --hold seconds. bob sends a chat state, then a
    chat message: the phone gets "two" (only the latest), the chat state
    and the message, in that order. bob changes his status to "three":
    held again until the phone says <active/>."""
    phone = alice(o, "phone", ["xep_0352"])
    bob = Device("bob", o.peer, o.peer_password, o)
    clients += [phone, bob]
    await asyncio.gather(phone.login(), bob.login())
    emit("csi", client=phone.name, offered=phone.csi_offered)
    if not phone.csi_offered:
        fail("phone: the server offered no <csi/>")
    await asyncio.gather(phone.start_im(), bob.start_im())
    a, b = phone.boundjid.bare, bob.boundjid.bare

    phone.send_presence_subscription(b)
    await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == a, "alice's subscription request")
    bob.send_presence_subscription(a, ptype="subscribed")
    await phone.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["type"] == "", "bob's presence")
    await phone.sync()
    await bob.sync()

    marker(phone, "inactive")
    phone["xep_0352"].send_inactive()  # send_raw: nothing is queued before it (the sync above)
    await phone.sync()  # the server has read <inactive/>; nothing is held yet
    for status in ("one", "two"):
        bob.send_presence(pstatus=status)
        await bob.sync()
    # No round trip of the phone's own now: the server delivers an IQ
    # answer at once, and what it held before it, to keep the order.
    await asyncio.sleep(o.hold)

    marker(bob, "chat")
    bob.send_chat(phone.boundjid.full, None, state="composing")
    bob.send_chat(phone.boundjid.full, "flush " + o.body, state="active")
    await phone.wait_body("flush " + o.body)
    await phone.sync()

    marker(bob, "three")
    bob.send_presence(pstatus="three")
    await bob.sync()
    await asyncio.sleep(o.hold)
    marker(phone, "active")
    phone["xep_0352"].send_active()
    await phone.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["status"] == "three", "bob's status three")
    await finish(phone, bob)


SCENARIOS = {
    "carbons": carbons,
    "sm_resume": sm_resume,
    "sm_expire": sm_expire,
    "csi": csi,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--away", type=float, default=0.5, help="sm_*: seconds the phone stays away")
    p.add_argument("--hold", type=float, default=1, help="csi: seconds to check that nothing arrives")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
