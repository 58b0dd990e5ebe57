#!/usr/bin/python3
"""Group chat scenarios (XEP-0045, package muc) for the Go end-to-end
tests in internal/e2e: creating and configuring rooms through the owner
form, joining, groupchat and private messages, history and subject on
join, the refusals of members-only and password rooms and of taken
nicknames, destruction with an alternative venue, rooms that outlive
a restart of the server, and the muc#admin side: mediated invitations
into members-only rooms, kicks, bans, and the removal of non-members
when a room becomes members-only.

Usage: /usr/bin/python3 muc.py [common options] SCENARIO [scenario options]

Built on slix.py and im.py: the same options (plus --wait, the bound of
every wait for the server, and --service, the group chat service), the
same kind of JSON lines on stdout (one object per line, ending with
{"event": "done"}) and the same exit codes.

Rooms are joined with slixmpp's xep_0045 plugin (join_muc_wait), the
owner form is fetched and submitted with its get_room_config and
set_room_config, the subject set with set_subject, rooms destroyed with
destroy, invitations sent with invite, roles and affiliations changed
with set_role and set_affiliation and listed with get_affiliation_list,
and the service and rooms discovered with xep_0030. Joins that
should be refused are sent as the plugin builds them (its muc_join
stanza) but awaited here: the plugin only hands a presence error to
join_muc_wait if the error echoes the <x xmlns='http://jabber.org/protocol/muc'/>
element, and otherwise waits until its timeout.

slixmpp 1.8.3 trap: join_muc_wait print()s the delay of every groupchat
message that arrives while it waits, on stdout; the plugin module's
print is sent to stderr here so stdout stays JSON lines.

Events, besides slix.py's and im.py's (message, presence, delay):

    muc_presence  a presence from the service as it arrived: type, the
                  muc#user status codes, item (with its <actor nick/> and
                  <reason/>), <destroy/>, error
    muc_message   a message from the service: type, body, subject (null
                  if none), <delay/>, whether it has a muc#user <x/>, its
                  <invite/> (from, to, reason; null if none) and
                  <password/>, error
    joined        what join_muc_wait returned: the self-presence's codes,
                  the occupants and history it collected, the subject
    join_error    the error presence a refused join got
    config_form   the owner form of a room (fields with types and values)
    config_reply  the reply to a submitted configuration
    disco_items   the items of a JID
    disco_info    the identities and features of a JID, and its roominfo form
    destroy_reply the reply to a destruction
    ping_reply    the reply to a self-ping (XEP-0410)
    admin_reply   the reply to a muc#admin request (label: kick, ban,
                  list_member...), with the JIDs of a list
"""

import asyncio
import sys

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.plugins.xep_0045 import muc as slix_muc
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import admin
import im
import slix
from slix import NS_CLIENT, emit, fail, step

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_DELAY = "urn:xmpp:delay"
NS_DATA = "jabber:x:data"


def _stderr_print(*args, **kw):
    kw["file"] = sys.stderr
    print(*args, **kw)


# See the module doc: the plugin's join_muc_wait prints on stdout.
slix_muc.print = _stderr_print


def describe_presence(xml):
    x = xml.find("{%s}x" % NS_MUC_USER)
    d = {"from": xml.get("from", ""), "to": xml.get("to", ""), "type": xml.get("type", ""),
         "error": slix.stanza_error(xml), "has_x": x is not None, "has_muc_join": xml.find("{%s}x" % NS_MUC) is not None,
         "codes": [], "item": None, "destroy": None}
    if x is None:
        return d
    d["codes"] = [int(s.get("code", "0")) for s in x.findall("{%s}status" % NS_MUC_USER)]
    item = x.find("{%s}item" % NS_MUC_USER)
    if item is not None:
        d["item"] = {k: item.get(k, "") for k in ("affiliation", "role", "jid", "nick")}
        actor = item.find("{%s}actor" % NS_MUC_USER)
        d["item"]["actor"] = actor.get("nick", "") if actor is not None else ""
        d["item"]["reason"] = item.findtext("{%s}reason" % NS_MUC_USER) or ""
    de = x.find("{%s}destroy" % NS_MUC_USER)
    if de is not None:
        d["destroy"] = {"jid": de.get("jid", ""), "reason": de.findtext("{%s}reason" % NS_MUC_USER) or ""}
    return d


def describe_message(xml):
    x = xml.find("{%s}x" % NS_MUC_USER)
    subj = xml.find("{%s}subject" % NS_CLIENT)
    body = xml.find("{%s}body" % NS_CLIENT)
    delay = xml.find("{%s}delay" % NS_DELAY)
    inv = x.find("{%s}invite" % NS_MUC_USER) if x is not None else None
    return {"from": xml.get("from", ""), "to": xml.get("to", ""), "type": xml.get("type", ""),
            "id": xml.get("id", ""),
            "body": (body.text or "") if body is not None else None,
            "subject": (subj.text or "") if subj is not None else None,
            "delay": {"from": delay.get("from", ""), "stamp": delay.get("stamp", "")} if delay is not None else None,
            "muc_user": x is not None,
            "invite": {"from": inv.get("from", ""), "to": inv.get("to", ""),
                       "reason": inv.findtext("{%s}reason" % NS_MUC_USER) or ""} if inv is not None else None,
            "password": x.findtext("{%s}password" % NS_MUC_USER) if x is not None else None,
            "codes": [int(s.get("code", "0")) for s in x.findall("{%s}status" % NS_MUC_USER)] if x is not None else [],
            "error": slix.stanza_error(xml)}


class MUCClient(im.IMClient):
    """An IMClient with slixmpp's MUC plugin that records every presence
    and message from the group chat service."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts, plugins=["xep_0030", "xep_0004", "xep_0045", "xep_0199"])
        self.muc_presences = []
        self.muc_messages = []
        self.register_handler(Callback("e2e muc presences", MatchXPath("{%s}presence" % NS_CLIENT), self._muc_presence))

    def _from_service(self, xml):
        return JID(xml.get("from", "")).domain == self.opts.service

    def _muc_presence(self, pres):
        if not self._from_service(pres.xml):
            return
        d = describe_presence(pres.xml)
        self.muc_presences.append(d)
        emit("muc_presence", client=self.name, **d)

    def _message(self, msg):
        super()._message(msg)
        if not self._from_service(msg.xml):
            return
        d = describe_message(msg.xml)
        self.muc_messages.append(d)
        emit("muc_message", client=self.name, **d)

    # --- actions --------------------------------------------------------

    async def join(self, room, nick, password=None):
        """Joins with the plugin's join_muc_wait (bounded by --wait)."""
        step("%s: join %s as %s" % (self.name, room, nick))
        try:
            pres, subject, occupants, history = await self["xep_0045"].join_muc_wait(
                JID(room), nick, password=password, timeout=self.opts.wait)
        except PresenceError as e:
            fail("%s: joining %s/%s refused: %s" % (self.name, room, nick, slix.stanza_error(e.presence.xml)))
        except asyncio.TimeoutError:
            fail("%s: joining %s/%s: no self-presence and subject within %gs" % (self.name, room, nick, self.opts.wait))
        emit("joined", client=self.name, room=room, nick=nick, from_jid=str(pres["from"]),
             codes=sorted(pres["muc"]["status_codes"]),
             occupants=[str(p["from"]) for p in occupants],
             history=[m["body"] for m in history],
             subject=subject["subject"], subject_from=str(subject["from"]))

    async def join_refused(self, label, room, nick, password=None):
        """Sends the join presence the plugin builds and waits for the
        error presence from room/nick (or a self-presence)."""
        full = "%s/%s" % (room, nick)
        step("%s: join %s (%s), expecting a refusal" % (self.name, full, label))
        pr = self.make_presence(pto=full)
        pr.enable("muc_join")
        if password is not None:
            pr["muc_join"]["password"] = password
        start = len(self.muc_presences)
        pr.send()

        def answer():
            for p in self.muc_presences[start:]:
                if p["from"] == full and (p["type"] == "error" or 110 in p["codes"]):
                    return p
            return None
        await self.wait_until(lambda: answer() is not None, "an answer to the join of %s" % full)
        p = answer()
        emit("join_error", client=self.name, label=label, room=room, nick=nick, **p)
        return p

    async def room_config(self, room, values):
        """Fetches the owner form with the plugin, fills in values and
        submits it; values None submits an empty form (instant room)."""
        plugin = self["xep_0045"]
        if values is None:
            form = self["xep_0004"].make_form(ftype="submit")
        else:
            step("%s: owner form of %s" % (self.name, room))
            try:
                form = await plugin.get_room_config(JID(room), timeout=self.opts.wait)
            except IqError as e:
                fail("%s: owner form of %s refused: %s" % (self.name, room, slix.stanza_error(e.iq.xml)))
            except IqTimeout:
                fail("%s: no owner form of %s within %gs" % (self.name, room, self.opts.wait))
            emit("config_form", client=self.name, room=room, form=admin.describe_form(form.xml))
            form.set_values(values)
        step("%s: submit the configuration of %s" % (self.name, room))
        try:
            await plugin.set_room_config(JID(room), form, timeout=self.opts.wait)
            r = {"type": "result", "error": None}
        except IqError as e:
            r = {"type": "error", "error": slix.stanza_error(e.iq.xml)}
        except IqTimeout:
            fail("%s: no answer to the configuration of %s within %gs" % (self.name, room, self.opts.wait))
        emit("config_reply", client=self.name, room=room, instant=values is None, **r)
        return r

    async def create(self, room, nick, values=None):
        await self.join(room, nick)
        await self.room_config(room, values)

    async def disco_items(self, jid):
        step("%s: disco#items of %s" % (self.name, jid))
        try:
            r = await self["xep_0030"].get_items(jid=jid, timeout=self.opts.wait)
            items = [{"jid": str(j), "node": n or "", "name": name or ""} for j, n, name in r["disco_items"]["items"]]
            emit("disco_items", client=self.name, jid=jid, type="result", error=None, items=items)
        except IqError as e:
            emit("disco_items", client=self.name, jid=jid, type="error", error=slix.stanza_error(e.iq.xml), items=[])
        except IqTimeout:
            fail("%s: no disco#items of %s within %gs" % (self.name, jid, self.opts.wait))

    async def disco_info(self, jid, label=""):
        step("%s: disco#info of %s" % (self.name, jid))
        try:
            r = await self["xep_0030"].get_info(jid=jid, timeout=self.opts.wait)
        except IqError as e:
            emit("disco_info", client=self.name, label=label, jid=jid, type="error",
                 error=slix.stanza_error(e.iq.xml), identities=[], features=[], form=None)
            return
        except IqTimeout:
            fail("%s: no disco#info of %s within %gs" % (self.name, jid, self.opts.wait))
        di = r["disco_info"]
        emit("disco_info", client=self.name, label=label, jid=jid, type="result", error=None,
             identities=[list(i) for i in di.get_identities(dedupe=False)],
             features=list(di.get_features(dedupe=False)),
             form=admin.describe_form(r.xml.find("{%s}query/{%s}x" % ("http://jabber.org/protocol/disco#info", NS_DATA))))

    async def groupchat(self, room, body):
        step("%s: groupchat to %s" % (self.name, room))
        self.send_message(mto=room, mbody=body, mtype="groupchat")

    async def wait_muc_message(self, pred, what):
        await self.wait_until(lambda: any(pred(m) for m in self.muc_messages), what)

    async def wait_removed(self, room, nick, code):
        """Waits for the unavailable self-presence from room/nick with the
        status code code (307 kicked, 301 banned, 322 members only...)."""
        full = "%s/%s" % (room, nick)
        await self.wait_until(lambda: any(p["from"] == full and p["type"] == "unavailable" and 110 in p["codes"]
                                          and code in p["codes"] for p in self.muc_presences),
                              "the removal from %s with status %d" % (room, code))

    async def admin(self, label, room, coro):
        """Awaits a muc#admin request of the plugin (coro) and reports its
        answer; a list's JIDs go in jids."""
        step("%s: muc#admin %s in %s" % (self.name, label, room))
        try:
            r = await coro
            jids = [str(j) for j in r] if isinstance(r, list) else []
            emit("admin_reply", client=self.name, label=label, room=room, type="result", error=None, jids=jids)
        except IqError as e:
            emit("admin_reply", client=self.name, label=label, room=room, type="error",
                 error=slix.stanza_error(e.iq.xml), jids=[])
        except IqTimeout:
            fail("%s: no answer to the muc#admin %s in %s within %gs" % (self.name, label, room, self.opts.wait))


def room_jid(o, local):
    return "%s@%s" % (local, o.service)


async def login_all(*clients):
    await asyncio.gather(*(c.login() for c in clients))


# --- scenarios ------------------------------------------------------------

async def chat(o, clients):
    """alice creates --room (110 and 201), configures it with the owner
    form (--room-name, persistent, public); bob joins and sees alice;
    both send a groupchat message (--body) and both must get both; alice
    sends a private message to bob's occupant JID; alice self-pings her
    occupant JID (XEP-0410); bob lists the service's rooms."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_roomname": o.room_name,
                                       "muc#roomconfig_persistentroom": True,
                                       "muc#roomconfig_publicroom": True})
    await bob.join(room, "bob")
    await alice.wait_until(lambda: any(p["from"] == room + "/bob" and p["type"] == "" for p in alice.muc_presences),
                           "bob's presence in the room")

    await alice.groupchat(room, "alice " + o.body)
    await bob.groupchat(room, "bob " + o.body)
    for c in (alice, bob):
        for who in ("alice", "bob"):
            await c.wait_muc_message(lambda m, who=who: m["type"] == "groupchat" and m["from"] == room + "/" + who
                                     and m["body"] == who + " " + o.body, "%s's groupchat message" % who)

    step("alice: private message to %s/bob" % room)
    alice.send_message(mto=room + "/bob", mbody="private " + o.body, mtype="chat")
    await bob.wait_muc_message(lambda m: m["body"] == "private " + o.body, "alice's private message")

    step("alice: self-ping")
    try:
        r = await alice["xep_0199"].send_ping(room + "/alice", timeout=o.wait)
        emit("ping_reply", client=alice.name, to=room + "/alice", type=r["type"], error=None)
    except IqError as e:
        emit("ping_reply", client=alice.name, to=room + "/alice", type="error", error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("alice: no answer to the self-ping within %gs" % o.wait)

    await bob.disco_items(o.service)
    await alice.sync()
    await bob.sync()


async def history(o, clients):
    """alice creates --room as an instant room; alice and bob send three
    groupchat messages (--body with a number); alice sets the subject
    (--subject); carol then joins and must get the three messages with
    delays, then the subject."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    for i, c in enumerate((alice, bob, alice), 1):
        body = "%s %d" % (o.body, i)
        await c.groupchat(room, body)
        await alice.wait_muc_message(lambda m, body=body: m["body"] == body, "groupchat message %d" % i)
    step("alice: set the subject")
    alice["xep_0045"].set_subject(JID(room), o.subject)
    await bob.wait_muc_message(lambda m: m["subject"] == o.subject, "the new subject")
    im.marker(alice, "carol_joins")

    carol = MUCClient("carol", o.third, o.third_password, o)
    clients.append(carol)
    await carol.login()
    await carol.join(room, "carol")
    await carol.sync()


async def refusals(o, clients):
    """alice creates --room members-only and --room-2 with the password
    --room-password, and --room-3 as an instant room; bob tries the
    members-only room (registration-required), the password room without
    and with a wrong password (not-authorized) and with the right one
    (joined); carol tries --room-3 under alice's nickname (conflict),
    then joins it as carol."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    carol = MUCClient("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await login_all(alice, bob, carol)
    members, secret, open_ = room_jid(o, o.room), room_jid(o, o.room_2), room_jid(o, o.room_3)
    await alice.create(members, "alice", {"muc#roomconfig_membersonly": True})
    await alice.create(secret, "alice", {"muc#roomconfig_passwordprotectedroom": True,
                                         "muc#roomconfig_roomsecret": o.room_password})
    await alice.create(open_, "alice")

    await bob.join_refused("members_only", members, "bob")
    await bob.join_refused("no_password", secret, "bob")
    await bob.join_refused("wrong_password", secret, "bob", password="not " + o.room_password)
    await bob.join(secret, "bob", password=o.room_password)
    await carol.join_refused("taken_nick", open_, "alice")
    await carol.join(open_, "carol")
    await alice.sync()


async def destroy(o, clients):
    """alice creates --room (instant); bob joins; alice destroys it with
    --venue as the alternative and --reason; both must get the
    unavailable presence with <destroy/>; the room is gone afterwards
    (disco#info)."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    im.marker(alice, "destroy")
    step("alice: destroy %s" % room)
    try:
        await alice["xep_0045"].destroy(JID(room), reason=o.reason, altroom=JID(o.venue), timeout=o.wait)
        emit("destroy_reply", client=alice.name, room=room, type="result", error=None)
    except IqError as e:
        emit("destroy_reply", client=alice.name, room=room, type="error", error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("alice: no answer to the destruction within %gs" % o.wait)
    for c, nick in ((alice, "alice"), (bob, "bob")):
        await c.wait_until(lambda c=c, nick=nick: any(p["from"] == room + "/" + nick and p["type"] == "unavailable"
                                                      for p in c.muc_presences), "the room's end")
    await bob.disco_info(room, "after")
    await bob.disco_items(o.service)


async def persist_create(o, clients):
    """alice creates --room with the owner form (--room-name, persistent)
    and leaves; bob then looks at its disco#info."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_roomname": o.room_name,
                                       "muc#roomconfig_persistentroom": True})
    alice["xep_0045"].leave_muc(JID(room), "alice")
    await alice.wait_until(lambda: any(p["from"] == room + "/alice" and p["type"] == "unavailable"
                                       for p in alice.muc_presences), "her exit presence")
    await bob.disco_info(room, "before")


async def persist_check(o, clients):
    """After a restart: bob looks at --room's disco#info and the
    service's items; alice joins it again (not created: no 201)."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await bob.disco_info(room, "after")
    await bob.disco_items(o.service)
    await alice.join(room, "alice")
    await alice.sync()


async def invite(o, clients):
    """alice creates --room members-only; bob (available) is refused
    (registration-required); alice invites him with the plugin's invite
    (mediated, --reason); bob gets the invitation from the room and
    joins; alice lists the members with get_affiliation_list."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    await bob.initial_presence()
    room = room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_membersonly": True})
    await bob.join_refused("members_only", room, "bob")
    step("alice: invite %s to %s" % (o.peer, room))
    alice["xep_0045"].invite(JID(room), JID(o.peer), reason=o.reason)
    await bob.wait_muc_message(lambda m: m["from"] == room and m["invite"] is not None, "the invitation")
    await bob.join(room, "bob")
    await alice.wait_until(lambda: any(p["from"] == room + "/bob" and p["type"] == "" for p in alice.muc_presences),
                           "bob's presence in the room")
    await alice.admin("list_member", room, alice["xep_0045"].get_affiliation_list(JID(room), "member", timeout=o.wait))
    await alice.sync()
    await bob.sync()


async def kick_ban(o, clients):
    """alice creates --room (instant); carol joins; alice kicks her with
    set_role none (--reason); carol joins again; alice bans her with
    set_affiliation outcast (--reason-2) and lists the outcasts; carol's
    next join is refused (forbidden)."""
    alice = MUCClient("alice", o.jid, o.password, o)
    carol = MUCClient("carol", o.third, o.third_password, o)
    clients += [alice, carol]
    await login_all(alice, carol)
    room = room_jid(o, o.room)
    await alice.create(room, "alice")
    await carol.join(room, "carol")
    im.marker(carol, "kick")
    await alice.admin("kick", room, alice["xep_0045"].set_role(JID(room), "carol", "none", reason=o.reason,
                                                               timeout=o.wait))
    await carol.wait_removed(room, "carol", 307)
    im.marker(carol, "rejoin")
    await carol.join(room, "carol")
    im.marker(carol, "ban")
    await alice.admin("ban", room, alice["xep_0045"].set_affiliation(JID(room), "outcast", jid=JID(o.third),
                                                                     reason=o.reason_2, timeout=o.wait))
    await carol.wait_removed(room, "carol", 301)
    await alice.admin("list_outcast", room, alice["xep_0045"].get_affiliation_list(JID(room), "outcast",
                                                                                 timeout=o.wait))
    await carol.join_refused("banned", room, "carol")
    await alice.sync()


async def members_only(o, clients):
    """alice creates --room (instant); bob joins; alice submits the owner
    form with muc#roomconfig_membersonly; bob is removed (322) and his
    next join is refused (registration-required)."""
    alice = MUCClient("alice", o.jid, o.password, o)
    bob = MUCClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await login_all(alice, bob)
    room = room_jid(o, o.room)
    await alice.create(room, "alice")
    await bob.join(room, "bob")
    im.marker(bob, "members_only")
    await alice.room_config(room, {"muc#roomconfig_membersonly": True})
    await bob.wait_removed(room, "bob", 322)
    await alice.wait_until(lambda: any(p["from"] == room + "/bob" and p["type"] == "unavailable"
                                       for p in alice.muc_presences), "bob's exit")
    await bob.join_refused("members_only", room, "bob")
    await alice.sync()


SCENARIOS = {
    "chat": chat,
    "history": history,
    "refusals": refusals,
    "destroy": destroy,
    "persist_create": persist_create,
    "persist_check": persist_check,
    "invite": invite,
    "kick_ban": kick_ban,
    "members_only": members_only,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--third", default="", help="the third account (carol)")
    p.add_argument("--third-password", default="")
    p.add_argument("--room", default="", help="local part of the room")
    p.add_argument("--room-2", default="", help="refusals: the password room")
    p.add_argument("--room-3", default="", help="refusals: the open room")
    p.add_argument("--room-name", default="", help="the room's name in the owner form")
    p.add_argument("--room-password", default="", help="refusals: the password room's password")
    p.add_argument("--subject", default="", help="history: the subject alice sets")
    p.add_argument("--venue", default="", help="destroy: the alternative venue")
    p.add_argument("--reason", default="", help="destroy: the reason; invite: the invitation's; kick_ban: the kick's")
    p.add_argument("--reason-2", default="", help="kick_ban: the ban's reason")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
