#!/usr/bin/python3
"""In-band registration scenarios (XEP-0077) for the Go end-to-end tests in
internal/e2e: creating an account before logging in, the server's
refusals, changing the password and removing the account from a session.

Usage: /usr/bin/python3 register.py [common options] SCENARIO [scenario options]

Built on slix.py and im.py: the same options (plus --wait, the bound of
every wait for the server), the same kind of JSON lines on stdout (one
object per line, ending with {"event": "done"}) and the same exit codes.

Registration goes through slixmpp's xep_0077 plugin where it works: when
the server offers <register/> among the stream features after STARTTLS,
the plugin asks for the form and fires "register", whose handler here
sends the username and password; the password change and the removal in
session are the plugin's change_password and cancel_registration. Where
it does not, raw IQs: while registration is closed the server offers no
<register/> (the plugin then does nothing), so with --force-feature the
client adds it to the features it received (slixmpp's own
force_registration option only works with direct TLS in 1.8.3: after
STARTTLS its socket is an SSLObject, not the ssl.SSLSocket it checks for),
and when the plugin's form request is refused, the client sends the set
anyway, as a client that skips the form would.

Events, besides slix.py's and im.py's:

    features        the children of a <stream:features/> as the server sent
                    them, and whether the client added <register/> itself
    register_form   the form the server sent (reply to the get)
    register_reply  the server's reply to a registration get or set
    auth_result     how a login that may fail ended (as in slix.py)
    change_reply    the reply to a password change in session
    remove_reply    the reply to an account removal in session
"""

import asyncio
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import StreamFeatures

import im
import slix
from slix import emit, fail, step

NS_REGISTER = "jabber:iq:register"
NS_DATA = "jabber:x:data"


def iq_reply(iq):
    """An IQ reply as the events report it."""
    return {"type": iq.xml.get("type", ""), "error": slix.stanza_error(iq.xml)}


async def bounded(aw, what, timeout):
    """Awaits aw for at most timeout seconds; ends the scenario if it does
    not finish in time."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        fail("no %s within %gs" % (what, timeout))


class RegClient(slix.Client):
    """A slix.Client that creates its account in-band before it logs in.

    The plugin's stream feature handler is wrapped: the wrapper bounds the
    plugin's form request (the plugin waits 120s), sends the set itself if
    the form was refused, and stops the negotiation on this stream (no
    SASL) unless the account was created and login is True."""

    def __init__(self, name, jid, password, opts, mech=None, login=False, force=False):
        super().__init__(name, jid, password, opts, mech)
        self.register_plugin("xep_0077")
        # slixmpp 1.8.3 queues every stanza sent before the session starts
        # (only bind and session IQs pass), so the registration IQs would
        # wait for a session that cannot start without the account.
        self._always_send_everything = True
        self.response_timeout = opts.wait
        # The username as given (slixmpp's JID would case-fold it).
        self.reg_username = jid.split("@", 1)[0]
        self.login_after = login
        self.force = force
        self.registered = False
        self.reg_done = asyncio.Event()
        self.add_filter("in", self._features_filter)
        self.add_event_handler("register", self._on_register_form)
        order = self["xep_0077"].order
        self.unregister_feature("register", order)
        self.register_feature("register", self._register_feature, restart=True, order=order)

    def _features_filter(self, stanza):
        if isinstance(stanza, StreamFeatures):
            names = slix.children(stanza.xml)
            forced = self.force and "mechanisms" in names and "register" not in names
            emit("features", client=self.name, features=names, forced=forced)
            if forced:
                stanza.enable("register")
        return stanza

    def _reply(self, stage, iq):
        emit("register_reply", client=self.name, username=self.reg_username, stage=stage, **iq_reply(iq))

    async def _register_feature(self, features):
        if "mechanisms" in self.features:  # logged in already
            return False
        step("%s: registration (form, then set)" % self.name)
        try:
            await asyncio.wait_for(self["xep_0077"]._handle_register_feature(features), 2 * self.opts.wait)
        except IqError as e:
            # The plugin stops at a refused form request.
            self._reply("get", e.iq)
            await self._send_set()
        except (IqTimeout, asyncio.TimeoutError):
            emit("register_reply", client=self.name, username=self.reg_username, stage="get", type="timeout", error=None)
        self.reg_done.set()
        # True ends the feature negotiation on this stream: no login.
        return not (self.login_after and self.registered)

    async def _on_register_form(self, form):
        """The plugin's "register" event: the form arrived; fill it in."""
        reg = form["register"]
        x = reg.xml.find("{%s}x" % NS_DATA)
        emit("register_form", client=self.name, instructions=reg["instructions"],
             fields=sorted(reg["fields"]), registered=reg["registered"],
             form_type=x.get("type", "") if x is not None else None,
             form_fields=[f.get("var", "") for f in x.findall("{%s}field" % NS_DATA)] if x is not None else [])
        await self._send_set()

    async def _send_set(self):
        iq = self.Iq(stype="set")
        iq["register"]["username"] = self.reg_username
        iq["register"]["password"] = self.password
        step("%s: registration set for %s" % (self.name, self.reg_username))
        try:
            self._reply("set", await iq.send(timeout=self.opts.wait))
            self.registered = True
        except IqError as e:
            self._reply("set", e.iq)
        except IqTimeout:
            emit("register_reply", client=self.name, username=self.reg_username, stage="set", type="timeout", error=None)

    async def register_account(self):
        """Connects, registers, and if login and the account was created,
        logs in on the same stream (emitting "login", or "auth_result" if
        that fails)."""
        login = asyncio.ensure_future(self.login(required=False))
        reg = asyncio.ensure_future(self.reg_done.wait())
        try:
            step("%s: connect and register %s" % (self.name, self.reg_username))
            await bounded(asyncio.wait({login, reg}, return_when=asyncio.FIRST_COMPLETED),
                          "registration by %s" % self.name, 3 * self.opts.wait)
            if not self.reg_done.is_set():
                fail("%s: the stream ended before registration (%s)" % (self.name, self.outcome))
            if self.login_after and self.registered:
                step("%s: login after registration" % self.name)
                if not await bounded(login, "login by %s after registration" % self.name, self.opts.wait):
                    auth_result(self)
        finally:
            reg.cancel()
            login.cancel()


def auth_result(c):
    emit("auth_result", client=c.name, outcome=c.outcome, failures=len(c.failed_auths),
         sent_mechs=c.sent_mechs, connects=c.connects)


async def try_login(o, clients, name, jid, password, mech):
    """A login that may fail, on a new connection: emits "login" or
    "auth_result", then closes the client. Returns whether it logged in."""
    c = slix.Client(name, jid, password, o, mech)
    clients.append(c)
    ok = await bounded(c.login(required=False), "end of %s's login" % name, o.wait)
    if not ok:
        auth_result(c)
    await c.close()
    return ok


# --- scenarios ------------------------------------------------------------

async def register(o, clients):
    """Registers --jid with --password, then each --attempt JID PASSWORD in
    turn, each on a new connection. With --login, a created account logs
    in on the stream it registered on, and again on a new connection with
    --again-mech."""
    attempts = [(o.jid, o.password)] + [tuple(a) for a in o.attempt]
    for i, (jid, pw) in enumerate(attempts, 1):
        c = RegClient("r%d" % i, jid, pw, o, mech=o.mech, login=o.login, force=o.force_feature)
        clients.append(c)
        await c.register_account()
        await c.close()
        if o.login and c.registered:
            await try_login(o, clients, "again%d" % i, jid, pw, o.again_mech)


async def login(o, clients):
    """Logs in --jid with --password with each --try-mech, each on a new
    connection."""
    for mech in o.try_mech:
        await try_login(o, clients, "login-" + mech, o.jid, o.password, mech)


async def change_password(o, clients):
    """--jid logs in with --password and changes it in session with the
    plugin's change_password: first to --short-password (if given), then to
    --new-password. Its session must still answer. Then each --try-mech
    logs in once with the new password and once with the old one."""
    c = slix.Client("user", o.jid, o.password, o, o.mech)
    c.register_plugin("xep_0077")
    clients.append(c)
    await c.login()
    for label, pw in (("short", o.short_password), ("new", o.new_password)):
        if not pw:
            continue
        step("user: change the password (%s)" % label)
        try:
            r = await c["xep_0077"].change_password(pw, timeout=o.wait)
        except IqError as e:
            r = e.iq
        except IqTimeout:
            fail("user: no reply to the password change (%s) within %gs" % (label, o.wait))
        emit("change_reply", client=c.name, label=label, **iq_reply(r))
    await bounded(c.sync(), "answer in the session after the change", o.wait)
    emit("marker", client=c.name, name="session_alive")
    await c.close()
    for mech in o.try_mech:
        await try_login(o, clients, "new-" + mech, o.jid, o.new_password, mech)
        await try_login(o, clients, "old-" + mech, o.jid, o.password, mech)


async def subscribe_both(a, b):
    """a and b (both online with roster and presence) subscribe to each
    other, and each waits until it sees the other online."""
    aj, bj = a.boundjid.bare, b.boundjid.bare
    a.send_presence_subscription(bj)
    await b.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == aj, "%s's subscription request" % aj)
    b.send_presence_subscription(aj, ptype="subscribed")
    b.send_presence_subscription(aj)
    await a.wait_presence(lambda p: p["type"] == "subscribe" and p["from"] == bj, "%s's subscription request" % bj)
    a.send_presence_subscription(bj, ptype="subscribed")
    for c, peer, other in ((a, bj, b), (b, aj, a)):
        await c.wait_until(lambda c=c, peer=peer: im.subscribed_item(c, peer, "both"),
                           "a roster push of %s with subscription both" % peer)
        await c.wait_until(lambda c=c, other=other: other.boundjid.full in c.online,
                           "got_online from %s" % other.boundjid.full)


async def remove(o, clients):
    """--jid (leaving) and --peer (friend) subscribe to each other; then
    leaving removes its account with the plugin's cancel_registration. The
    IQ result must come, then the end of leaving's stream; friend must see
    leaving go unavailable and its roster item drop to subscription none.
    Last, a new login with leaving's password."""
    leaving = im.IMClient("leaving", o.jid, o.password, o, plugins=["xep_0077"])
    friend = im.IMClient("friend", o.peer, o.peer_password, o)
    clients += [leaving, friend]
    await asyncio.gather(leaving.login(), friend.login())
    await asyncio.gather(leaving.start_im(), friend.start_im())
    await subscribe_both(leaving, friend)
    await leaving.sync()
    await friend.sync()
    lj = leaving.boundjid

    im.marker(leaving, "remove")
    step("leaving: remove the account")
    try:
        r = await leaving["xep_0077"].cancel_registration(timeout=o.wait)
    except IqError as e:
        r = e.iq
    except IqTimeout:
        fail("leaving: no reply to the removal within %gs" % o.wait)
    emit("remove_reply", client=leaving.name, **iq_reply(r))
    await leaving.wait_until(lambda: leaving.disconnects > 0, "the end of its stream")
    await friend.wait_presence(lambda p: p["type"] == "unavailable" and p["from"] == lj.full,
                               "%s's unavailable presence" % lj.full)
    await friend.wait_until(lambda: friend.server_roster.get(lj.bare, {}).get("subscription") == "none",
                            "a roster push of %s with subscription none" % lj.bare)
    # Anything else the server sends friend about it arrives meanwhile.
    await asyncio.sleep(0.3)
    await friend.sync()
    friend.state(lj.bare)
    await try_login(o, clients, "relogin", o.jid, o.password, o.again_mech)


SCENARIOS = {
    "register": register,
    "login": login,
    "change_password": change_password,
    "remove": remove,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--attempt", nargs=2, action="append", default=[], metavar=("JID", "PASSWORD"),
                   help="register: one more registration, on its own connection")
    p.add_argument("--login", action="store_true", help="register: log in with a created account")
    p.add_argument("--force-feature", action="store_true",
                   help="register: try to register even if the server offers no <register/>")
    p.add_argument("--again-mech", default="SCRAM-SHA-256",
                   help="mechanism of the logins on a new connection (register --login, remove)")
    p.add_argument("--try-mech", action="append", default=[], help="login, change_password: mechanisms to log in with")
    p.add_argument("--new-password", default="", help="change_password: the new password")
    p.add_argument("--short-password", default="", help="change_password: a new password the server must refuse")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
