#!/usr/bin/python3
"""IM scenarios for the Go end-to-end tests in internal/e2e: roster and
roster versioning, presence subscriptions, offline messages, service
discovery and the small server queries (version, ping, time).

Usage: /usr/bin/python3 im.py [common options] SCENARIO [scenario options]

Built on slix.py: the same options, the same kind of JSON lines on stdout
(one object per line, ending with {"event": "done"}) and the same exit
codes. Every wait for something the server should send is bounded by
--wait seconds (and the whole scenario by --timeout); a wait that runs out
ends the scenario with an "error" event that says what was missing,
except where a scenario reports the absence itself (offline_login).

Events printed by every client of these scenarios, in the order things
happened (all on one event loop):

    presence      a <presence/> the client received
    roster        a roster result or push the client received
    delay         a received message carried a XEP-0203 <delay/>
    marker        the scenario reached a point the Go test orders on
"""

import asyncio
import copy
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import xep_0082
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import slix
from slix import NS_CLIENT, emit, fail, step

NS_ROSTER = "jabber:iq:roster"
NS_DELAY = "urn:xmpp:delay"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_TIME = "urn:xmpp:time"


def roster_item(el):
    """A roster <item/> as the server sent it."""
    return {
        "jid": el.get("jid", ""),
        "name": el.get("name", ""),
        "subscription": el.get("subscription", ""),
        "ask": el.get("ask", ""),
        "groups": [g.text or "" for g in el.findall("{%s}group" % NS_ROSTER)],
    }


def describe_roster_reply(xml):
    """What a reply to a roster get, as received, holds: whether there is a
    <query/> at all (XEP-0237 answers a current version with an empty
    result), its version and its items."""
    q = xml.find("{%s}query" % NS_ROSTER)
    return {
        "type": xml.get("type", ""),
        "has_query": q is not None,
        "ver": q.get("ver") if q is not None else None,
        "items": [roster_item(el) for el in q.findall("{%s}item" % NS_ROSTER)] if q is not None else [],
        "xml": ET.tostring(xml, encoding="unicode"),
    }


class IMClient(slix.Client):
    """A slix.Client that also records presence, the roster as the server
    sends it, and XEP-0203 delays, and leaves subscription requests to the
    scenario (slixmpp would answer them itself, and send presence of its own
    with its approval)."""

    def __init__(self, name, jid, password, opts, plugins=()):
        super().__init__(name, jid, password, opts, opts.mech)
        self.register_plugin("xep_0203")
        for p in plugins:
            self.register_plugin(p)
        self.auto_authorize = None
        self.auto_subscribe = False
        self.got_presences = []  # every <presence/> received, as dicts
        self.server_roster = {}  # jid -> item, from roster results and pushes
        self.roster_ver = None   # version of the last roster result or push
        self.online = []         # the presences' 'from' of slixmpp's got_online events
        self.stream_features = None  # the last <stream:features/> element
        # id -> copy of each IQ result or error as it arrived: slixmpp's own
        # handlers change the stanza afterwards (reading iq['roster']['ver']
        # adds an empty <query/> to an empty result).
        self.received_iqs = {}
        self.register_handler(Callback("e2e presences", MatchXPath("{%s}presence" % NS_CLIENT), self._presence))
        self.register_handler(Callback("e2e roster", MatchXPath("{%s}iq/{%s}query" % (NS_CLIENT, NS_ROSTER)),
                                       self._roster_iq))
        self.register_handler(Callback("e2e features", MatchXPath("{%s}features" % NS_STREAMS), self._features))
        self.add_event_handler("got_online", lambda p: self.online.append(p["from"].full))

    # --- recorders ------------------------------------------------------

    def _presence(self, pres):
        xml = pres.xml

        def text(tag):
            el = xml.find("{%s}%s" % (NS_CLIENT, tag))
            return (el.text or "") if el is not None else ""
        p = {
            "from": xml.get("from", ""),
            "to": xml.get("to", ""),
            "type": xml.get("type", ""),
            "status": text("status"),
            "priority": text("priority"),
        }
        self.got_presences.append(p)
        emit("presence", client=self.name, **p)

    def _roster_iq(self, iq):
        typ = iq.xml.get("type", "")
        if typ not in ("result", "set"):
            return
        q = iq.xml.find("{%s}query" % NS_ROSTER)
        items = [roster_item(el) for el in q.findall("{%s}item" % NS_ROSTER)]
        if typ == "result":
            self.server_roster = {}
        for it in items:
            if it["subscription"] == "remove":
                self.server_roster.pop(it["jid"], None)
            else:
                self.server_roster[it["jid"]] = it
        if q.get("ver") is not None:
            self.roster_ver = q.get("ver")
        emit("roster", client=self.name, push=typ == "set", ver=q.get("ver"), items=items)

    def _iq(self, iq):
        super()._iq(iq)
        if iq.xml.get("type") in ("result", "error"):
            self.received_iqs[iq.xml.get("id", "")] = copy.deepcopy(iq.xml)

    def _features(self, features):
        self.stream_features = features.xml

    def _message(self, msg):
        super()._message(msg)
        d = msg.xml.find("{%s}delay" % NS_DELAY)
        if d is None:
            return
        stamp = msg["delay"]["stamp"]  # slixmpp's reading (xep_0203)
        emit("delay", client=self.name, body=self.messages[-1]["body"],
             stamp=stamp.isoformat() if stamp else "", raw_stamp=d.get("stamp", ""),
             delay_from=d.get("from", ""), text=d.text or "")

    # --- actions --------------------------------------------------------

    async def wait_until(self, pred, what, timeout=None):
        """Waits until pred() holds, at most --wait seconds."""
        step("%s: wait for %s" % (self.name, what))
        timeout = timeout or self.opts.wait

        async def poll():
            while not pred():
                await asyncio.sleep(0.01)
        try:
            await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            fail("%s: no %s within %gs" % (self.name, what, timeout))

    async def wait_presence(self, pred, what):
        await self.wait_until(lambda: any(pred(p) for p in self.got_presences), what)

    async def fetch_roster(self):
        """slixmpp's get_roster: with the version it holds, since the server
        offers roster versioning."""
        step("%s: get roster (ver %r)" % (self.name, self.client_roster.version))
        marker(self, "get_roster", rosterver="rosterver" in self.features, sent_ver=self.client_roster.version)
        try:
            return await self.get_roster(timeout=self.opts.wait)
        except (IqError, IqTimeout) as e:
            fail("%s: roster get failed: %r" % (self.name, e))

    async def initial_presence(self, **kw):
        """Sends (initial) broadcast presence and waits until the server
        processed it."""
        marker(self, "presence_sent", **kw)
        self.send_presence(**kw)
        await self.sync()

    async def start_im(self):
        """What an IM client does after login: the roster, then presence
        (RFC 6121 2.2 and 4.2)."""
        await self.fetch_roster()
        await self.initial_presence()

    async def raw_roster_get(self, ver):
        """A roster get built by hand: with ver='...' unless ver is None."""
        iq = self.Iq(stype="get")
        q = ET.SubElement(iq.xml, "{%s}query" % NS_ROSTER)
        if ver is not None:
            q.set("ver", ver)
        step("%s: raw roster get ver=%r" % (self.name, ver))
        try:
            return await iq.send(timeout=self.opts.wait)
        except (IqError, IqTimeout) as e:
            fail("%s: roster get ver=%r failed: %r" % (self.name, ver, e))

    def state(self, peer):
        """Emits the client's view at the end: the roster as the server
        sent it, slixmpp's roster entry of peer, and got_online events."""
        item = self.client_roster[peer]
        emit("im_state", client=self.name, jid=self.boundjid.full, roster=list(self.server_roster.values()),
             roster_ver=self.roster_ver, peer_subscription=item["subscription"],
             peer_pending_out=item["pending_out"], online=self.online)


def marker(c, name, **fields):
    emit("marker", client=c.name, name=name, **fields)


def subscribed_item(c, peer, sub):
    it = c.server_roster.get(peer)
    return it is not None and it["subscription"] == sub and it["ask"] == ""


# --- scenarios ------------------------------------------------------------

async def subscribe_online(o, clients):
    """alice and bob, both online with roster and presence, subscribe to
    each other: alice asks, bob approves and asks back, alice approves.
    Then each changes its status, which the other must see."""
    alice = IMClient("alice", o.jid, o.password, o)
    bob = IMClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    await asyncio.gather(alice.start_im(), bob.start_im())
    a, b = alice.boundjid.bare, bob.boundjid.bare

    marker(alice, "subscribe")
    alice.send_presence_subscription(b)
    await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == a, "alice's subscription request")
    marker(bob, "approve_and_subscribe")
    bob.send_presence_subscription(a, ptype="subscribed")
    bob.send_presence_subscription(a)
    await alice.wait_presence(lambda p: p["type"] == "subscribed" and p["from"] == b, "bob's approval")
    await alice.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == b, "bob's subscription request")
    marker(alice, "approve")
    alice.send_presence_subscription(b, ptype="subscribed")

    for c, peer, other in ((alice, b, bob), (bob, a, alice)):
        await c.wait_until(lambda c=c, peer=peer: subscribed_item(c, peer, "both"), "a roster push of %s with subscription both" % peer)
        await c.wait_until(lambda c=c, other=other: other.boundjid.full in c.online, "got_online from %s" % other.boundjid.full)
    await alice.sync()
    await bob.sync()

    # Presence broadcast now reaches the contact.
    marker(alice, "status_change")
    alice.send_presence(pstatus="alice " + o.body)
    bob.send_presence(pstatus="bob " + o.body)
    await bob.wait_presence(lambda p: p["from"] == alice.boundjid.full and p["status"] == "alice " + o.body,
                            "alice's new status")
    await alice.wait_presence(lambda p: p["from"] == bob.boundjid.full and p["status"] == "bob " + o.body,
                              "bob's new status")
    await alice.sync()
    await bob.sync()
    alice.state(b)
    bob.state(a)


async def subscribe_offline(o, clients):
    """alice asks to subscribe to bob, who is offline. bob logs in, gets
    his roster, makes round trips, and only then sends initial presence:
    the request must come after it. bob approves; alice's roster shows
    'to'."""
    alice = IMClient("alice", o.jid, o.password, o)
    clients.append(alice)
    await alice.login()
    await alice.start_im()
    a, b = alice.boundjid.bare, slixmpp.JID(o.peer).bare

    marker(alice, "subscribe")
    alice.send_presence_subscription(b)
    await alice.wait_until(lambda: alice.server_roster.get(b, {}).get("ask") == "subscribe",
                           "a roster push of %s with ask='subscribe'" % b)
    await alice.sync()

    bob = IMClient("bob", o.peer, o.peer_password, o)
    clients.append(bob)
    await bob.login()
    await bob.fetch_roster()
    await bob.sync()
    await asyncio.sleep(0.3)  # anything sent too early would arrive meanwhile
    await bob.sync()
    await bob.initial_presence()
    await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == a, "alice's subscription request")
    marker(bob, "approve")
    bob.send_presence_subscription(a, ptype="subscribed")
    await alice.wait_until(lambda: subscribed_item(alice, b, "to"), "a roster push of %s with subscription to" % b)
    await bob.wait_until(lambda: subscribed_item(bob, a, "from"), "a roster push of %s with subscription from" % a)
    await alice.wait_until(lambda: bob.boundjid.full in alice.online, "got_online from %s" % bob.boundjid.full)
    await alice.sync()
    await bob.sync()
    alice.state(b)
    bob.state(a)


async def offline_login(o, clients):
    """bob logs in, gets his roster, makes round trips, and sends initial
    presence; messages stored while he was offline must come after that,
    with a <delay/>. Reports "offline_wait" with what arrived within
    --wait seconds of the presence."""
    bob = IMClient("bob", o.jid, o.password, o)
    clients.append(bob)
    await bob.login()
    await bob.fetch_roster()
    await bob.sync()
    await asyncio.sleep(0.3)  # anything sent too early would arrive meanwhile
    await bob.sync()
    before = len(bob.messages)
    await bob.initial_presence(ppriority=o.priority)

    async def wait():
        while len(bob.messages) - before < o.expect:
            await asyncio.sleep(0.01)
    step("bob: wait for %d stored messages" % o.expect)
    try:
        await asyncio.wait_for(wait(), o.wait)
    except asyncio.TimeoutError:
        pass
    await bob.sync()
    emit("offline_wait", client=bob.name, before_presence=before, after_presence=len(bob.messages) - before,
         waited=o.wait)


async def rosterver(o, clients):
    """Roster versioning (XEP-0237) through slixmpp's get_roster, which
    sends the version it holds when the server offers the feature, and
    through roster gets built by hand."""
    alice = IMClient("alice", o.jid, o.password, o)
    clients.append(alice)
    await alice.login()

    def report(label, sent_ver, reply):
        xml = alice.received_iqs[reply["id"]]
        emit("roster_reply", client=alice.name, label=label, sent_ver=sent_ver, **describe_roster_reply(xml))

    sent = alice.client_roster.version
    report("first", sent, await alice.fetch_roster())
    v0 = alice.client_roster.version
    sent = alice.client_roster.version
    report("unchanged", sent, await alice.fetch_roster())

    step("alice: add %s" % o.to)
    marker(alice, "roster_set", jid=o.to)
    try:
        await alice.client_roster.update(o.to, name="Carol", groups=["Friends"], timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("alice: roster set failed: %r" % e)
    await alice.wait_until(lambda: o.to in alice.server_roster, "the roster push of %s" % o.to)
    v1 = alice.roster_ver
    report("raw_stale", v0, await alice.raw_roster_get(v0))
    report("raw_current", v1, await alice.raw_roster_get(v1))
    report("raw_without_ver", None, await alice.raw_roster_get(None))
    sent = alice.client_roster.version
    report("after_push", sent, await alice.fetch_roster())


async def disco(o, clients):
    """Service discovery of the server (XEP-0030) and its entity caps
    (XEP-0115), software version (XEP-0092), ping (XEP-0199) and entity
    time (XEP-0202), through slixmpp's plugins."""
    alice = IMClient("alice", o.jid, o.password, o,
                     plugins=["xep_0030", "xep_0092", "xep_0115", "xep_0199", "xep_0202"])
    clients.append(alice)
    await alice.login()
    domain = alice.boundjid.domain

    try:
        step("alice: disco#info of %s" % domain)
        info = await alice["xep_0030"].get_info(jid=domain, timeout=o.wait)
        di = info["disco_info"]
        emit("disco_info", client=alice.name, from_jid=str(info["from"]), type=info["type"],
             features=list(di.get_features(dedupe=False)),
             identities=[list(i) for i in di.get_identities(dedupe=False)])

        caps = alice.stream_features.find("{%s}c" % NS_CAPS) if alice.stream_features is not None else None
        if caps is not None:
            node = "%s#%s" % (caps.get("node", ""), caps.get("ver", ""))
            step("alice: disco#info of %s node %s" % (domain, node))
            cinfo = await alice["xep_0030"].get_info(jid=domain, node=node, timeout=o.wait)
            computed = alice["xep_0115"].generate_verstring(cinfo["disco_info"], caps.get("hash", ""))
            emit("caps", client=alice.name, node=caps.get("node", ""), ver=caps.get("ver", ""),
                 hash=caps.get("hash", ""), computed=computed, reply_node=cinfo["disco_info"]["node"])

        step("alice: software version of %s" % domain)
        v = await alice["xep_0092"].get_version(domain, timeout=o.wait)
        sv = v["software_version"]
        emit("version", client=alice.name, from_jid=str(v["from"]), type=v["type"],
             name=sv["name"], version=sv["version"], os=sv["os"])

        for to in (domain, alice.boundjid.bare):
            step("alice: ping %s" % to)
            p = await alice["xep_0199"].send_ping(to, timeout=o.wait)
            emit("ping", client=alice.name, sent_to=to, from_jid=str(p["from"]), type=p["type"])

        step("alice: entity time of %s" % domain)
        t = await alice["xep_0202"].get_entity_time(domain, timeout=o.wait)
        el = t.xml.find("{%s}time" % NS_TIME)
        utc = el.find("{%s}utc" % NS_TIME) if el is not None else None
        tzo = el.find("{%s}tzo" % NS_TIME) if el is not None else None
        # Not t["entity_time"]["utc"]: slixmpp 1.8.3 appends a "Z" to the
        # <utc/> text before parsing it, so it fails on every conforming
        # value ("...Z", XEP-0082). The plugin's XEP-0082 parser reads it.
        utc = utc.text if utc is not None else ""
        emit("time", client=alice.name, from_jid=str(t["from"]), type=t["type"],
             time=xep_0082.parse(utc).isoformat() if utc else "",
             utc=utc, tzo=tzo.text if tzo is not None else "")
    except IqError as e:
        fail("alice: %s: error reply %s" % (slix.STEP, e.iq))
    except IqTimeout:
        fail("alice: %s: no reply within %gs" % (slix.STEP, o.wait))


SCENARIOS = {
    "subscribe_online": subscribe_online,
    "subscribe_offline": subscribe_offline,
    "offline_login": offline_login,
    "rosterver": rosterver,
    "disco": disco,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--priority", type=int, default=None, help="offline_login: priority of the initial presence")
    p.add_argument("--expect", type=int, default=1, help="offline_login: stored messages to wait for")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
