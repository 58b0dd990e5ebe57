#!/usr/bin/python3
"""Service administration scenarios for the Go end-to-end tests in
internal/e2e: the XEP-0133 commands (as XEP-0050 ad-hoc commands on the
server's domain), the registration policy command, XEP-0401 invitations
and invite-only registration (XEP-0379 pre-authentication, then
XEP-0077).

Usage: /usr/bin/python3 admin.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py and register.py: the same options (plus --wait,
the bound of every wait for the server), the same kind of JSON lines on
stdout (one object per line, ending with {"event": "done"}) and the same
exit codes.

Commands go through slixmpp's plugins: the list is xep_0050's
get_commands (disco#items of the commands node), the XEP-0133 commands
start with xep_0133's helpers (add_user, delete_user, ...) and the
others with xep_0050's start_command; a form the server sends back is
filled in with the values the scenario has for its fields and submitted
with xep_0050's send_command (action complete, or cancel; see
AdminClient.command for why not complete_command). The <preauth/> request that
presents an invitation token has no slixmpp plugin: it is a raw IQ, sent
on the registering client's stream after STARTTLS and before the
xep_0077 plugin asks for the registration form.

Events, besides those of slix.py, im.py and register.py:

    commands        the command list the server gave (disco#items)
    command_reply   the server's reply to one stage of a command: execute
                    (the form, a completed result or an error), then
                    complete or cancel; with its status, notes and data
                    form as they arrived
    headline        a message of type headline, with its subject
    invite_uri      the parts of the invitation link a client was given
    preauth_reply   the reply to the <preauth/> request
"""

import asyncio
import sys
import urllib.parse

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

import im
import register
import slix
from slix import NS_CLIENT, emit, fail, step

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_PREAUTH = "urn:xmpp:pars:0"
NODE_ADMIN = "http://jabber.org/protocol/admin#"
NODE_REGISTRATION = "urn:treff:admin#registration"
NODE_INVITE = "urn:xmpp:invite#invite"


def describe_form(x):
    """A data form (XEP-0004) as it arrived."""
    if x is None:
        return None

    def text(tag):
        el = x.find("{%s}%s" % (NS_DATA, tag))
        return (el.text or "") if el is not None else ""
    fields = []
    for f in x.findall("{%s}field" % NS_DATA):
        fields.append({
            "var": f.get("var", ""),
            "type": f.get("type", ""),
            "label": f.get("label", ""),
            "required": f.find("{%s}required" % NS_DATA) is not None,
            "values": [v.text or "" for v in f.findall("{%s}value" % NS_DATA)],
            "options": [o.findtext("{%s}value" % NS_DATA) or "" for o in f.findall("{%s}option" % NS_DATA)],
        })
    return {"type": x.get("type", ""), "title": text("title"), "instructions": text("instructions"), "fields": fields}


def describe_command(xml):
    """A reply to a <command/> request as it arrived: the IQ's type and
    error, and the <command/> element's status, session, actions, notes
    and form (empty if the reply has no <command/>)."""
    cmd = xml.find("{%s}command" % NS_COMMANDS)
    d = {"type": xml.get("type", ""), "from": xml.get("from", ""), "error": slix.stanza_error(xml),
         "has_command": cmd is not None, "node": "", "sessionid": "", "status": "",
         "actions": [], "notes": [], "form": None}
    if cmd is None:
        return d
    acts = cmd.find("{%s}actions" % NS_COMMANDS)
    d.update(node=cmd.get("node", ""), sessionid=cmd.get("sessionid", ""), status=cmd.get("status", ""),
             actions=slix.children(acts) if acts is not None else [],
             notes=[{"type": n.get("type", ""), "text": n.text or ""} for n in cmd.findall("{%s}note" % NS_COMMANDS)],
             form=describe_form(cmd.find("{%s}x" % NS_DATA)))
    return d


class AdminClient(im.IMClient):
    """An IMClient with slixmpp's ad-hoc commands plugins (xep_0050, and
    xep_0133 for the service administration nodes), which also reports
    headline messages with their subject."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts, plugins=["xep_0030", "xep_0004", "xep_0050", "xep_0133"])

    def _message(self, msg):
        super()._message(msg)
        m = self.messages[-1]
        if m["type"] == "headline":
            subj = msg.xml.find("{%s}subject" % NS_CLIENT)
            emit("headline", client=self.name, subject=(subj.text or "") if subj is not None else None,
                 **{k: m[k] for k in ("from", "to", "body")})

    def headlines(self):
        return [m for m in self.messages if m["type"] == "headline"]

    async def list_commands(self):
        """The command list of the domain, with the plugin's get_commands."""
        domain = self.boundjid.domain
        step("%s: command list of %s" % (self.name, domain))
        try:
            r = await self["xep_0050"].get_commands(domain, timeout=self.opts.wait)
        except IqError as e:
            r = e.iq
        except IqTimeout:
            fail("%s: no command list within %gs" % (self.name, self.opts.wait))
        items = []
        if r["type"] == "result":
            items = [{"jid": str(j), "node": n or "", "name": name or ""} for j, n, name in r["disco_items"]["items"]]
        emit("commands", client=self.name, type=r["type"], error=slix.stanza_error(r.xml), items=items)
        return items

    async def command(self, label, node, values=None, cancel=False):
        """Runs the command node of the domain with the plugin: execute
        (through xep_0133's helper for its nodes, else xep_0050's
        start_command); if the server sends a form, the fields in values
        are filled in and the form submitted with action complete, or the
        command cancelled if cancel. Emits a command_reply per stage and
        returns the last.

        The second stage goes through xep_0050's send_command, not its
        complete_command or cancel_command: their replies go to the
        session's handlers only if they carry a <command/> with the
        session's ID, so an error reply (which does not echo the
        <command/>, RFC 6120 8.3.1) would never reach the scenario."""
        domain = self.boundjid.domain
        started = asyncio.get_running_loop().create_future()

        def handler(iq, session):
            if iq["type"] == "error":
                # The plugin keeps the session of an error reply under the
                # reply's (empty) session ID and would hand the next error
                # reply, of any command, to this handler: forget it.
                self["xep_0050"].terminate_command(session)
            if not started.done():
                started.set_result(iq)

        def emit_reply(stage, iq):
            # The copy as it arrived (the plugin adds an empty <command/>
            # to an error reply when it reads it).
            d = describe_command(self.received_iqs.get(iq["id"], iq.xml))
            emit("command_reply", client=self.name, label=label, sent_node=node, stage=stage, **d)
            return d

        session = {"next": handler, "error": handler}
        helper = None
        if node.startswith(NODE_ADMIN):
            helper = getattr(self["xep_0133"], node[len(NODE_ADMIN):].replace("-", "_"), None)
        step("%s: execute %s (%s)" % (self.name, node, label))
        if helper is not None:
            helper(jid=domain, session=session)
        else:
            self["xep_0050"].start_command(domain, node, session)
        try:
            iq = await asyncio.wait_for(started, self.opts.wait)
        except asyncio.TimeoutError:
            fail("%s: no reply to the execution of %s within %gs" % (self.name, node, self.opts.wait))
        d = emit_reply("execute", iq)
        if d["type"] != "result" or d["status"] != "executing" or d["form"] is None:
            return d
        if cancel:
            action, payload = "cancel", None
        else:
            # Values set while the fields still have their types, so that
            # a list gives a jid-multi several values and text-multi's
            # lines become several values.
            action, payload = "complete", iq["command"]["form"]
            payload["values"] = values or {}
            payload["type"] = "submit"
        step("%s: %s %s (%s)" % (self.name, action, node, label))
        try:
            r = await self["xep_0050"].send_command(domain, node, action=action, payload=payload,
                                                    sessionid=d["sessionid"], timeout=self.opts.wait)
        except IqError as e:
            r = e.iq
        except IqTimeout:
            fail("%s: no reply to %s of %s within %gs" % (self.name, action, node, self.opts.wait))
        # The plugin still holds the session of the execution.
        self["xep_0050"].terminate_command(session)
        return emit_reply(action, r)


async def login_all(*clients):
    await asyncio.gather(*(c.login() for c in clients))


# --- scenarios ------------------------------------------------------------

async def commands(o, clients):
    """--jid lists the commands of its domain, then executes each
    --execute NODE in turn: a command that answers with a form is
    cancelled (nothing changes), one without a form runs at once."""
    c = AdminClient("user", o.jid, o.password, o)
    clients.append(c)
    await c.login()
    await c.list_commands()
    for node in o.execute:
        await c.command(node, node, cancel=True)


async def manage(o, clients):
    """The admin --jid manages --account while --peer (friend) is online:

    add-user (the account then logs in and stays online as "added"), the
    same again, and once with a password-verify that differs;
    change-user-password to --new-password (then a login with the new
    password, "new", and one with the old, "old"); the user count and list;
    the online count (admin, friend and added are online); an announcement
    with --subject and --body, which every online client must get once as
    a headline; delete-user of the account ("added" must lose its stream),
    then a login with the new password ("deleted") and the user list
    again."""
    admin = AdminClient("admin", o.jid, o.password, o)
    friend = AdminClient("friend", o.peer, o.peer_password, o)
    clients += [admin, friend]
    await login_all(admin, friend)
    acct = o.account
    await admin.command("add", NODE_ADMIN + "add-user",
                        {"accountjid": acct, "password": o.account_password, "password-verify": o.account_password})
    added = AdminClient("added", acct, o.account_password, o)
    clients.append(added)
    await added.login()
    await admin.command("add_again", NODE_ADMIN + "add-user",
                        {"accountjid": acct, "password": "another password", "password-verify": "another password"})
    await admin.command("add_mismatch", NODE_ADMIN + "add-user",
                        {"accountjid": o.mismatch_account, "password": "first password",
                         "password-verify": "second password"})

    await admin.command("change", NODE_ADMIN + "change-user-password", {"accountjid": acct, "password": o.new_password})
    await register.try_login(o, clients, "new", acct, o.new_password, o.again_mech)
    await register.try_login(o, clients, "old", acct, o.account_password, o.again_mech)

    await admin.command("users_num", NODE_ADMIN + "get-registered-users-num")
    await admin.command("users_list", NODE_ADMIN + "get-registered-users-list")
    await admin.command("online_num", NODE_ADMIN + "get-online-users-num")

    im.marker(admin, "announce")
    await admin.command("announce", NODE_ADMIN + "announce", {"subject": o.subject, "announcement": o.body})
    for c in (friend, added, admin):
        await c.wait_until(lambda c=c: c.headlines(), "the announcement")
    # A second copy would arrive meanwhile.
    await asyncio.sleep(0.3)
    for c in (friend, added, admin):
        await c.sync()

    im.marker(admin, "delete")
    await admin.command("delete", NODE_ADMIN + "delete-user", {"accountjids": [acct]})
    await added.wait_until(lambda: added.disconnects > 0, "the end of its stream")
    await register.try_login(o, clients, "deleted", acct, o.new_password, o.again_mech)
    await admin.command("users_list_after", NODE_ADMIN + "get-registered-users-list")


async def set_policy(o, clients):
    """--jid sets the registration policy with the command
    urn:treff:admin#registration, once for each --policy in turn."""
    c = AdminClient("admin", o.jid, o.password, o)
    clients.append(c)
    await c.login()
    for p in o.policy:
        await c.command(p, NODE_REGISTRATION, {"policy": p})


def parse_invite(uri):
    """The JID, action and parameters of an XMPP URI (RFC 5122) such as
    xmpp:example.org?register;preauth=TOKEN."""
    scheme, _, rest = uri.partition(":")
    path, _, query = rest.partition("?")
    action, *params = query.split(";") if query else [""]
    ps = {}
    for p in params:
        k, _, v = p.partition("=")
        ps[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
    return {"scheme": scheme, "jid": urllib.parse.unquote(path), "action": action, "params": ps}


class InviteClient(register.RegClient):
    """A RegClient that presents an invitation token with a <preauth/>
    request (XEP-0401 section 5) after STARTTLS, before the registration.
    It registers whatever the answer, as a client that does not check it
    would."""

    def __init__(self, name, jid, password, opts, token, login=False):
        super().__init__(name, jid, password, opts, mech=opts.mech, login=login)
        self.token = token
        self.preauth_done = False

    async def _register_feature(self, features):
        if "mechanisms" not in self.features and not self.preauth_done:
            self.preauth_done = True
            iq = self.Iq(stype="set")
            ET.SubElement(iq.xml, "{%s}preauth" % NS_PREAUTH).set("token", self.token)
            step("%s: preauth" % self.name)
            try:
                r = await iq.send(timeout=self.opts.wait)
            except IqError as e:
                r = e.iq
            except IqTimeout:
                fail("%s: no reply to the preauth request within %gs" % (self.name, self.opts.wait))
            emit("preauth_reply", client=self.name, token=self.token, **register.iq_reply(r))
        return await super()._register_feature(features)


async def register_invite(o, clients):
    """Registers --jid with --password using the invitation link --invite:
    its token goes in a <preauth/> request first. With --login, the
    account logs in on the stream it registered on, and again ("again1")
    on a new connection with --again-mech."""
    inv = parse_invite(o.invite)
    emit("invite_uri", uri=o.invite, **inv)
    token = inv["params"].get("preauth")
    if inv["action"] != "register" or not token:
        fail("not an invitation to register: %s" % o.invite)
    c = InviteClient("r1", o.jid, o.password, o, token, login=o.login)
    clients.append(c)
    await c.register_account()
    await c.close()
    if o.login and c.registered:
        await register.try_login(o, clients, "again1", o.jid, o.password, o.again_mech)


SCENARIOS = {
    "commands": commands,
    "manage": manage,
    "set_policy": set_policy,
    "register_invite": register_invite,
}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--execute", action="append", default=[], help="commands: a command node to execute")
    p.add_argument("--account", default="", help="manage: the account the admin adds and deletes")
    p.add_argument("--account-password", default="", help="manage: its first password")
    p.add_argument("--mismatch-account", default="", help="manage: an account added with differing passwords")
    p.add_argument("--new-password", default="", help="manage: the password the admin sets")
    p.add_argument("--subject", default="", help="manage: the announcement's subject (--body is its text)")
    p.add_argument("--policy", action="append", default=[], help="set_policy: a policy to set")
    p.add_argument("--invite", default="", help="register_invite: the invitation link")
    p.add_argument("--login", action="store_true", help="register_invite: log in with the created account")
    p.add_argument("--again-mech", default="SCRAM-SHA-256", help="mechanism of the logins on a new connection")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
