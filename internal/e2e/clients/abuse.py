#!/usr/bin/python3
"""Abuse scenarios (issue 19, package abuse) for the Go end-to-end test
internal/e2e/abuse_test.go: spam reports, suspended accounts, password
guessing, and the server-wide and real-time block lists across servers.

Usage: /usr/bin/python3 abuse.py [options] SCENARIO

Built on slix.py and im.py: the same JSON lines on stdout (one object per
line, ending with {"event": "done"}) and the same exit codes. Every wait
for a server is bounded by --wait seconds, the whole scenario by
--timeout.

Some scenarios stop where the Go test must act on the server (run an
admin command, wait for a list to load): they print

    {"event": "pause", "name": NAME}

and go on when a line "go" arrives on standard input (anything else ends
the scenario with an error).

Scenarios:

    report      the admin (--admin-jid) logs in with presence; the user
                (--jid) reads its server's disco#info, then blocks
                --reported with a XEP-0377 report (urn:xmpp:reporting:1,
                reason spam, --text, one XEP-0359 stanza id --stanza-id
                BY=ID) inside the XEP-0191 <block/> item, built here
                (slixmpp 1.8.3's xep_0377 knows only urn:xmpp:reporting:0
                and puts the report beside the items); the admin waits
                for the server's message about it.
    registration  the admin (--admin-jid) logs in with presence; a new
                client registers --jid in-band (register.py's RegClient,
                XEP-0077); the admin waits for the server's message about
                the new account.
    suspend     the user (--jid) logs in with presence; pause "suspend";
                its stream must end; a new login with the right password
                (SCRAM-SHA-256) must fail; pause "unsuspend"; the next
                login must succeed.
    unbound     --logins logins with the right password, slixmpp
                choosing the mechanism (SCRAM-*-PLUS with tls-unique
                first, refused, then SCRAM-SHA-256).
    guess       one login with the right password (--password), then
                --wrong logins with a wrong one, each on its own
                connection with SCRAM-SHA-256 only (one attempt per
                connection), then one with the right password again.
    federation  alice on Treff (--alice-jid, --treff-addr); mallory and
                keeper on Prosody (--mallory-jid, --keeper-jid,
                --prosody-addr). keeper creates the block list node
                --node on --service (open access), pause "node"; alice
                logs in with presence. Then rounds of "mallory writes to
                alice" (probe) with pauses between them: "block" (the
                domain is blocked by the admin), "unblock", "block-hash"
                (the SHA-256 of mallory's JID is), "unblock-hash", then
                keeper publishes an item whose id is --spam-domain and pause
                "published", then keeper retracts it (notify) and pause
                "retracted". In the blocked rounds alice also writes to
                mallory.

Events besides slix.py's:

    register_reply   register.py's: the answers to the registration
    server_features  the features of the user's server (disco#info)
    block_reply      the answer to the <block/> with the report
    admin_message    a message with a subject the admin got: from, type,
                     subject, body
    failed_auth      as slix.py's, with the failure's text
    session_end      the user's stream ended: stream_errors
    attempt          one login attempt of guess: n, password (right or
                     wrong), outcome, conditions, text, seconds
    probe            a round of federation: round, delivered (whether
                     alice got mallory's message), mallory_error (the
                     error that came back to mallory, or null),
                     alice_error (the error of alice's message to
                     mallory, or null, if she wrote)
    feed             keeper's action on the node: action, id
"""

import argparse
import asyncio
import copy
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

import im
import register
import slix
from im import marker
from slix import NS_CLIENT, emit, fail, step

NS_BLOCKING = "urn:xmpp:blocking"
NS_REPORTING = "urn:xmpp:reporting:1"
NS_SID = "urn:xmpp:sid:0"


class Client(im.IMClient):
    """An IMClient that records the subject of messages and the text of
    SASL failures. It logs in with SCRAM-SHA-256 only: slixmpp 1.8.3
    would try SCRAM-*-PLUS first, binding with tls-unique, which TLS 1.3
    lacks, and each such failure counts against auth_limit."""

    def __init__(self, name, jid, password, opts, plugins=(), mech="SCRAM-SHA-256"):
        o = copy.copy(opts)
        o.mech = mech
        super().__init__(name, jid, password, o, plugins=plugins)

    def _failed_auth(self, failure):
        f = {
            "mech": self["feature_mechanisms"].mech.name,
            "conditions": [c for c in slix.children(failure.xml) if c != "text"],
            "text": failure["text"],
            "xml": str(failure),
        }
        self.failed_auths.append(f)
        emit("failed_auth", client=self.name, **f)

    def _message(self, msg):
        super()._message(msg)
        subj = msg.xml.find("{%s}subject" % NS_CLIENT)
        self.messages[-1]["subject"] = subj.text if subj is not None and subj.text else ""


def opts_for(o, addr):
    co = copy.copy(o)
    co.addr = addr
    return co


async def pause(name, **fields):
    """Lets the Go test act: prints the pause and waits for "go"."""
    step("pause %s" % name)
    emit("pause", name=name, **fields)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        fail("pause %s: the test said %r" % (name, line.strip()))


# --- report ----------------------------------------------------------------

async def report(o, clients):
    admin = Client("admin", o.admin_jid, o.admin_password, o)
    user = Client("user", o.jid, o.password, o, plugins=["xep_0030"])
    clients += [admin, user]
    await asyncio.gather(admin.login(), user.login())
    await admin.initial_presence()
    step("user: disco#info of the server")
    try:
        info = await user["xep_0030"].get_info(jid=user.boundjid.domain, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("user: disco#info of the server: %r" % e)
    emit("server_features", client=user.name, features=sorted(info["disco_info"]["features"]))

    iq = user.Iq(stype="set")
    block = ET.SubElement(iq.xml, "{%s}block" % NS_BLOCKING)
    item = ET.SubElement(block, "{%s}item" % NS_BLOCKING, jid=o.reported)
    rep = ET.SubElement(item, "{%s}report" % NS_REPORTING, reason="urn:xmpp:reporting:spam")
    by, _, sid = o.stanza_id.partition("=")
    ET.SubElement(rep, "{%s}stanza-id" % NS_SID, by=by, id=sid)
    ET.SubElement(rep, "{%s}text" % NS_REPORTING).text = o.text
    step("user: block and report %s" % o.reported)
    try:
        await iq.send(timeout=o.wait)
        emit("block_reply", client=user.name, type="result", error=None)
    except IqError as e:
        emit("block_reply", client=user.name, type="error", error=slix.stanza_error(e.iq.xml))
    except IqTimeout:
        fail("user: no answer to the block with the report")
    await admin.wait_until(lambda: any(m["subject"] for m in admin.messages), "the server's message about the report")
    for m in admin.messages:
        if m["subject"]:
            emit("admin_message", client=admin.name, **{k: m[k] for k in ("from", "type", "subject", "body")})


# --- registration ----------------------------------------------------------

async def registration(o, clients):
    admin = Client("admin", o.admin_jid, o.admin_password, o)
    clients.append(admin)
    await admin.login()
    await admin.initial_presence()
    newbie = register.RegClient("newbie", o.jid, o.password, o, mech="SCRAM-SHA-256")
    clients.append(newbie)
    await newbie.register_account()
    await newbie.close()
    await admin.wait_until(lambda: any(m["subject"] for m in admin.messages), "the server's message about the new account")
    for m in admin.messages:
        if m["subject"]:
            emit("admin_message", client=admin.name, **{k: m[k] for k in ("from", "type", "subject", "body")})


# --- suspend ---------------------------------------------------------------

async def suspend(o, clients):
    user = Client("user", o.jid, o.password, o)
    clients.append(user)
    await user.login()
    await user.initial_presence()
    await pause("suspend")
    await user.wait_until(lambda: user.disconnects > 0, "the end of the suspended account's session")
    emit("session_end", client=user.name, stream_errors=user.stream_errors)

    refused = Client("refused", o.jid, o.password, o)
    clients.append(refused)
    ok = await refused.login(required=False)
    emit("auth_result", client=refused.name, outcome=refused.outcome, failures=len(refused.failed_auths))
    if ok:
        return
    await pause("unsuspend")
    again = Client("again", o.jid, o.password, o)
    clients.append(again)
    await again.login(required=False)
    emit("auth_result", client=again.name, outcome=again.outcome, failures=len(again.failed_auths))


# --- guess -----------------------------------------------------------------

async def guess(o, clients):
    tries = [("right", o.password)] + [("wrong", o.password + " (a guess %d)" % i) for i in range(o.wrong)] + \
        [("right", o.password)]
    for n, (kind, pw) in enumerate(tries):
        c = Client("try%d" % n, o.jid, pw, o)
        clients.append(c)
        t0 = time.monotonic()
        ok = await c.login(required=False)
        f = c.failed_auths[-1] if c.failed_auths else {"conditions": [], "text": ""}
        emit("attempt", client=c.name, n=n, password=kind, outcome=c.outcome, failures=len(c.failed_auths),
             conditions=f["conditions"], text=f["text"], seconds=round(time.monotonic() - t0, 3))
        await c.close()


async def unbound(o, clients):
    """--logins logins with the right password, slixmpp choosing the
    mechanism: it tries SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS with
    tls-unique (refused: TLS 1.3 has none) before SCRAM-SHA-256."""
    for n in range(o.logins):
        c = Client("login%d" % n, o.jid, o.password, o, mech=None)
        clients.append(c)
        t0 = time.monotonic()
        await c.login(required=False)
        emit("attempt", client=c.name, n=n, password="right", outcome=c.outcome, failures=len(c.failed_auths),
             conditions=[x for f in c.failed_auths for x in f["conditions"]], text="",
             mechs=[f["mech"] for f in c.failed_auths], seconds=round(time.monotonic() - t0, 3))
        await c.close()


# --- federation ------------------------------------------------------------

async def federation(o, clients):
    # Prosody 0.12 offers SCRAM-SHA-1 (and its -PLUS) and PLAIN, not
    # SCRAM-SHA-256: slixmpp picks.
    keeper = Client("keeper", o.keeper_jid, o.password, opts_for(o, o.prosody_addr),
                    plugins=["xep_0030", "xep_0004", "xep_0060"], mech=None)
    mallory = Client("mallory", o.mallory_jid, o.password, opts_for(o, o.prosody_addr), mech=None)
    clients += [keeper, mallory]
    await asyncio.gather(keeper.login(), mallory.login())
    await mallory.initial_presence()

    ps = keeper["xep_0060"]
    form = keeper["xep_0004"].make_form("submit")
    form.add_field("FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field("pubsub#access_model", value="open")
    form.add_field("pubsub#notify_retract", value="1")
    step("keeper: create %s on %s" % (o.node, o.service))
    try:
        await ps.create_node(o.service, o.node, config=form, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("keeper: creating the node: %r" % e)
    emit("feed", client=keeper.name, action="created", id="")
    await pause("node")

    alice = Client("alice", o.alice_jid, o.password, opts_for(o, o.treff_addr))
    clients.append(alice)
    await alice.login()
    await alice.initial_presence()

    async def probe(rnd, blocked):
        body = "%s: round %s" % (o.body, rnd)
        m0, a0 = len(mallory.messages), len(alice.messages)
        marker(mallory, "send", round=rnd)
        mallory.send_message(mto=o.alice_jid, mbody=body, mtype="chat")
        delivered = False
        mallory_error = alice_error = None
        if blocked:
            # The error comes back from Treff when it refuses the message;
            # whatever it had delivered to alice is queued to her before
            # her own round trip ends.
            await mallory.wait_until(lambda: any(m["type"] == "error" for m in mallory.messages[m0:]),
                                     "the error for the message to alice (round %s)" % rnd)
            mallory_error = next(m for m in mallory.messages[m0:] if m["type"] == "error")
            await alice.sync()
            delivered = any(m["body"] == body for m in alice.messages[a0:])
            m1 = len(alice.messages)
            marker(alice, "send", round=rnd)
            alice.send_message(mto=o.mallory_jid, mbody="reply " + body, mtype="chat")
            await alice.wait_until(lambda: any(m["type"] == "error" for m in alice.messages[m1:]),
                                   "the error for the message to mallory (round %s)" % rnd)
            alice_error = next(m for m in alice.messages[m1:] if m["type"] == "error")
        else:
            await alice.wait_until(lambda: any(m["body"] == body for m in alice.messages[a0:]),
                                   "mallory's message (round %s)" % rnd)
            delivered = True
            await mallory.sync()
            if any(m["type"] == "error" for m in mallory.messages[m0:]):
                mallory_error = next(m for m in mallory.messages[m0:] if m["type"] == "error")

        def err(m):
            return None if m is None else {"from": m["from"], **(m["error"] or {})}
        emit("probe", client=alice.name, round=rnd, delivered=delivered, mallory_error=err(mallory_error),
             alice_error=err(alice_error))

    await probe("before", False)
    await pause("block")
    await probe("blocked", True)
    await pause("unblock")
    await probe("unblocked", False)
    await pause("block-hash")
    await probe("hashed", True)
    await pause("unblock-hash")

    step("keeper: publish %s" % o.spam_domain)
    payload = ET.Element("{urn:treff:e2e:rtbl}reason")
    payload.text = "spam"
    try:
        await ps.publish(o.service, o.node, id=o.spam_domain, payload=payload, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("keeper: publishing: %r" % e)
    emit("feed", client=keeper.name, action="published", id=o.spam_domain)
    await pause("published")
    await probe("listed", True)

    step("keeper: retract %s" % o.spam_domain)
    try:
        await ps.retract(o.service, o.node, o.spam_domain, notify=True, timeout=o.wait)
    except (IqError, IqTimeout) as e:
        fail("keeper: retracting: %r" % e)
    emit("feed", client=keeper.name, action="retracted", id=o.spam_domain)
    await pause("retracted")
    await probe("delisted", False)


SCENARIOS = {"report": report, "registration": registration, "suspend": suspend, "guess": guess, "unbound": unbound, "federation": federation}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--cert", required=True, help="PEM file of the certificate (authority) to trust")
    p.add_argument("--addr", default=None, help="server address IP:port (report, suspend, guess)")
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--wait", type=float, default=10)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--jid", default="")
    p.add_argument("--password", default="")
    p.add_argument("--admin-jid", default="")
    p.add_argument("--admin-password", default="")
    p.add_argument("--reported", default="")
    p.add_argument("--text", default="")
    p.add_argument("--stanza-id", default="", help="BY=ID")
    p.add_argument("--wrong", type=int, default=3)
    p.add_argument("--logins", type=int, default=3)
    p.add_argument("--body", default="hello")
    p.add_argument("--treff-addr", default="")
    p.add_argument("--prosody-addr", default="")
    p.add_argument("--alice-jid", default="")
    p.add_argument("--mallory-jid", default="")
    p.add_argument("--keeper-jid", default="")
    p.add_argument("--service", default="")
    p.add_argument("--node", default="")
    p.add_argument("--spam-domain", default="")
    o = p.parse_args(argv)
    o.mech = None
    o.direct_tls = False
    return o


if __name__ == "__main__":
    slix.run(parse_args(sys.argv[1:]), SCENARIOS)
