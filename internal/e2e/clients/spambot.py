#!/usr/bin/python3
"""Spam scenarios for the Go end-to-end tests in internal/e2e
(spambot_test.go), against the example server's defences (package
antispam): "spambot", a freshly registered account flooding strangers
while established users chat (the limits), and "filter", a user keeping
strangers' messages away with the ad-hoc commands (the stranger filter),
and "preauth", a connection asking for the registration form again and
again before logging in (the core's limit on IQs before authentication).

Usage: /usr/bin/python3 spambot.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py and register.py: the same options and the same
kind of JSON lines on stdout, ending with {"event": "done"}.

Events, besides those of slix.py and im.py:

    bot_report     what came back to the bot: its errors (bounced) by kind,
                   condition, type and text, and the rooms it entered
    received       per target or friend: how many messages (and
                   subscription requests) it got from whom, and its errors
    command_reply  a reply to an ad-hoc command (as in admin.py)
    marker         carol's messages before and after her review
    stranger_errors the errors the stranger got (none: the filter is silent)
    preauth_replies the replies to the form requests of one connection
"""

import asyncio
import collections
import sys

from slixmpp.exceptions import IqError, IqTimeout

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import admin
import im
import register
import slix
from slix import emit, step

NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"


class Bot(register.RegClient):
    """A RegClient that records every presence that comes back."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.presences = []
        self.register_handler(Callback("e2e bot presences", MatchXPath("{%s}presence" % NS_CLIENT), self._bot_presence))

    def _bot_presence(self, pres):
        xml = pres.xml
        x = xml.find("{%s}x" % NS_MUC_USER)
        self.presences.append({
            "from": xml.get("from", ""),
            "type": xml.get("type", ""),
            "error": slix.stanza_error(xml),
            "codes": [s.get("code", "") for s in x.findall("{%s}status" % NS_MUC_USER)] if x is not None else [],
        })


def error_key(kind, e):
    return "%s %s %s %s" % (kind, ",".join(e.get("conditions", [])), e.get("type", ""), e.get("text", ""))


async def chat(a, b, n):
    """a sends b n chat messages, numbered."""
    step("%s: chat %d messages to %s" % (a.name, n, b.boundjid.bare))
    for i in range(n):
        a.send_message(mto=b.boundjid.bare, mbody="%s says %d" % (a.name, i), mtype="chat")
        if i % 20 == 19:
            await asyncio.sleep(0)  # let the other clients run meanwhile
    await a.sync()


async def flood(bot, o):
    """The bot's flood: --messages chat messages to the targets in turn,
    then --subscriptions subscription requests to JIDs nobody registered,
    then --rooms new rooms."""
    targets = [t.split("=", 1)[0] for t in o.target]
    step("bot: %d messages" % o.messages)
    for i in range(o.messages):
        bot.send_message(mto=targets[i % len(targets)], mbody="BUY CHEAP %d" % i, mtype="chat")
        if i % 20 == 19:
            await asyncio.sleep(0)
    step("bot: %d subscription requests" % o.subscriptions)
    for i in range(o.subscriptions):
        bot.send_presence(pto="ghost%d@%s" % (i, bot.boundjid.domain), ptype="subscribe")
        if i % 20 == 19:
            await asyncio.sleep(0)
    step("bot: %d rooms" % o.rooms)
    for i in range(o.rooms):
        p = bot.make_presence(pto="spam%d@conference.%s/bot" % (i, bot.boundjid.domain))
        p.xml.append(slix.ET.Element("{%s}x" % NS_MUC))
        p.send()
    # Every error for the flood is queued to the bot before this answer.
    await bot.sync()


async def spambot(o, clients):
    """Targets (--target JID=PASSWORD) and two friends (--jid/--password
    and --peer/--peer-password, who become each other's contacts) log in;
    the bot (--bot JID=PASSWORD) registers in-band and logs in. Then, at
    once, the bot floods and the friends chat (--chat messages each way).
    Last, every client reports what it got."""
    friends = [im.IMClient("friend1", o.jid, o.password, o), im.IMClient("friend2", o.peer, o.peer_password, o)]
    targets = []
    for i, spec in enumerate(o.target):
        jid, pw = spec.split("=", 1)
        targets.append(im.IMClient("target%d" % (i + 1), jid, pw, o))
    clients += friends + targets
    await asyncio.gather(*(c.login() for c in friends + targets))
    await asyncio.gather(*(c.start_im() for c in friends + targets))
    await register.subscribe_both(friends[0], friends[1])

    bjid, bpw = o.bot.split("=", 1)
    bot = Bot("bot", bjid, bpw, o, login=True)
    clients.append(bot)
    await bot.register_account()
    if not bot.registered or bot.outcome != "session":
        slix.fail("bot: not registered and logged in (%s)" % bot.outcome)

    await asyncio.gather(flood(bot, o), chat(friends[0], friends[1], o.chat), chat(friends[1], friends[0], o.chat))
    # What the bot and the friends sent was routed before their answers;
    # the targets' and friends' own answers come after it.
    await asyncio.gather(*(c.sync() for c in friends + targets))

    errors = collections.Counter()
    for m in bot.messages:
        if m["type"] == "error":
            errors[error_key("message", m["error"] or {})] += 1
    entered = 0
    for p in bot.presences:
        if p["type"] == "error":
            errors[error_key("presence", p["error"] or {})] += 1
        elif "201" in p["codes"]:
            entered += 1
    emit("bot_report", client="bot", jid=bot.boundjid.full, bounced=dict(errors), rooms_created=entered)
    for c in friends + targets:
        got = collections.Counter(m["from"].split("/")[0] for m in c.messages if m["type"] != "error")
        subs = collections.Counter(p["from"].split("/")[0] for p in c.got_presences if p["type"] == "subscribe")
        errs = [m["error"] for m in c.messages if m["type"] == "error"]
        emit("received", client=c.name, jid=c.boundjid.bare, messages=dict(got), subscribes=dict(subs), errors=errs)


NODE_FILTER = "urn:treff:antispam#filter"
NODE_QUARANTINE = "urn:treff:antispam#quarantine"


async def filter_strangers(o, clients):
    """--jid (carol) and --peer (friend) become each other's contacts;
    --stranger is online. With the server's default (drop), the
    stranger's first message goes nowhere. Carol chooses quarantine with
    the ad-hoc command "Messages from strangers"; the stranger sends her
    three messages and a subscription request, friend one message. Carol
    reviews the kept ones with "Messages kept from strangers", delivering
    the first two and discarding the others; the two then arrive."""
    carol = admin.AdminClient("carol", o.jid, o.password, o)
    friend = im.IMClient("friend", o.peer, o.peer_password, o)
    sjid, spw = o.stranger.split("=", 1)
    stranger = im.IMClient("stranger", sjid, spw, o)
    clients += [carol, friend, stranger]
    await asyncio.gather(*(c.login() for c in (carol, friend, stranger)))
    await asyncio.gather(*(c.start_im() for c in (carol, friend, stranger)))
    # With the server filtering strangers, each adds the other to the
    # roster first: a subscription request from a stranger is dropped
    # too.
    step("carol and friend: add each other to the roster")
    await asyncio.gather(carol.update_roster(friend.boundjid.bare, timeout=o.wait),
                         friend.update_roster(carol.boundjid.bare, timeout=o.wait))
    await register.subscribe_both(carol, friend)
    cj = carol.boundjid.bare

    step("stranger: a message while carol drops")
    stranger.send_message(mto=cj, mbody="dropped 0", mtype="chat")
    await stranger.sync()
    await carol.command("mode", NODE_FILTER, {"mode": "quarantine"})
    step("stranger: messages and a request while carol quarantines")
    for i in range(1, 4):
        stranger.send_message(mto=cj, mbody="kept %d" % i, mtype="chat")
    stranger.send_presence(pto=cj, ptype="subscribe")
    friend.send_message(mto=cj, mbody="from a friend", mtype="chat")
    await asyncio.gather(stranger.sync(), friend.sync())
    await carol.sync()
    im.marker(carol, "before_review", bodies=[m["body"] for m in carol.messages if m["type"] == "chat"],
              subscribes=[p["from"] for p in carol.got_presences if p["type"] == "subscribe"])
    await carol.command("review", NODE_QUARANTINE, {"deliver": ["1", "2"], "discard": True})
    await carol.wait_until(lambda: sum(1 for m in carol.messages if m["body"].startswith("kept")) >= 2,
                           "the two messages delivered from the quarantine")
    await carol.sync()
    im.marker(carol, "after_review", bodies=[m["body"] for m in carol.messages if m["type"] == "chat"])
    await carol.command("review_again", NODE_QUARANTINE)
    emit("stranger_errors", client="stranger", errors=[m["error"] for m in stranger.messages if m["type"] == "error"])


class PreAuthFlooder(register.RegClient):
    """A RegClient that, offered <register/> before logging in, asks for
    the registration form --requests times on that stream, one after the
    other, and stops there (no registration, no login)."""

    def __init__(self, name, jid, password, opts, requests):
        super().__init__(name, jid, password, opts)
        self.requests = requests

    async def _register_feature(self, features):
        replies = []
        for i in range(self.requests):
            step("%s: form request %d" % (self.name, i + 1))
            iq = self.Iq(stype="get")
            iq.enable("register")
            try:
                r = await iq.send(timeout=self.opts.wait)
            except IqError as e:
                r = e.iq
            except IqTimeout:
                slix.fail("%s: no answer to form request %d within %gs" % (self.name, i + 1, self.opts.wait))
            replies.append(register.iq_reply(r))
        emit("preauth_replies", client=self.name, replies=replies)
        self.reg_done.set()
        return True  # no login on this stream


async def preauth(o, clients):
    """Two connections that do not log in: the first asks for the
    registration form --requests times, the second once."""
    for name, n in (("flooder", o.requests), ("next", 1)):
        c = PreAuthFlooder(name, o.jid, o.password, o, n)
        clients.append(c)
        await c.register_account()
        await c.close()


SCENARIOS = {"spambot": spambot, "filter": filter_strangers, "preauth": preauth}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=10, help="seconds for each wait for the server")
    p.add_argument("--bot", default="", help="spambot: JID=PASSWORD the bot registers")
    p.add_argument("--target", action="append", default=[], help="JID=PASSWORD of a target")
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--subscriptions", type=int, default=200)
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--chat", type=int, default=100, help="messages each friend sends the other")
    p.add_argument("--stranger", default="", help="filter: JID=PASSWORD of the stranger")
    p.add_argument("--requests", type=int, default=20, help="preauth: form requests on the first stream")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
