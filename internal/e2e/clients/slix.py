#!/usr/bin/python3
"""slixmpp client driven by the Go end-to-end tests in internal/e2e.

Usage: /usr/bin/python3 slix.py [common options] SCENARIO [scenario options]

Each scenario logs in one or more slixmpp clients to the server given by
--addr (an IP:port; no name is ever resolved), does its steps, and prints
one JSON object per line on stdout, for example

    {"event": "login", "client": "alice", "jid": "alice@localhost/x", ...}
    {"event": "message", "client": "bob", "from": "...", "body": "..."}
    {"event": "done"}

The Go test asserts on these lines. Diagnostics go to stderr. Exit codes:
0 when the scenario ran to its end (the Go side decides whether what
happened is right), 1 for an uncaught exception (traceback on stderr), 2
for bad usage or a client that could not log in when it had to, 3 when
the scenario did not finish within --timeout (stderr says at which step).
"""

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
import time

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# What the scenario is doing now, for the timeout message.
STEP = "starting"


def step(s):
    global STEP
    STEP = s
    logging.getLogger("e2e").debug("step: %s", s)


# Set once "done" is printed: what handlers see while the clients close
# (their own disconnection, a peer's unavailable presence) comes after the
# scenario's end and is not printed, so that "done" is the last line.
DONE = False


def emit(event, **fields):
    global DONE
    if DONE:
        return
    fields = {"event": event, **fields}
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    DONE = event == "done"


def local_name(tag):
    return tag.rsplit("}", 1)[-1]


def children(xml):
    """Names of the child elements of an element (its conditions)."""
    return [local_name(c.tag) for c in xml]


def stanza_error(xml):
    """The <error/> child of a stanza: type, condition(s) and text."""
    err = xml.find("{%s}error" % NS_CLIENT)
    if err is None:
        return None
    conds = [local_name(c.tag) for c in err if c.tag.startswith("{%s}" % NS_STANZAS) and local_name(c.tag) != "text"]
    text = err.find("{%s}text" % NS_STANZAS)
    return {"type": err.get("type", ""), "conditions": conds, "text": text.text if text is not None else ""}


def forced_without_binding(xmpp):
    """With a forced mechanism without channel binding (--mech SCRAM-SHA-1,
    say), slixmpp 1.8 still says it could bind (gs2 flag "y"), which a
    server that offers -PLUS must refuse as a downgrade (RFC 5802 section
    6; Treff accepts "y" only after the client tried -PLUS on the stream).
    A client that chose not to bind says "n": so does this one, then."""
    fm = xmpp["feature_mechanisms"]
    creds = fm.sasl_callback

    def no_binding(required, optional):
        c = creds(required, optional)
        if "channel_binding" in c:
            c["channel_binding"] = None
        return c

    fm.sasl_callback = no_binding


class Client(slixmpp.ClientXMPP):
    """A ClientXMPP that connects only to the given address, trusts the
    server's certificate and records what happens to it."""

    def __init__(self, name, jid, password, opts, mech=None):
        super().__init__(jid, password, sasl_mech=mech)
        if mech and not mech.endswith("-PLUS"):
            forced_without_binding(self)
        self.name = name
        self.opts = opts
        self.use_aiodns = False
        self.use_ipv6 = False
        # TLS server name (SNI) as a real client sends it; see also
        # get_dns_records.
        self.default_domain = self.boundjid.domain
        self.whitespace_keepalive = False
        ctx = ssl.create_default_context(cafile=opts.cert)
        # The certificate is for "localhost"; we connect to 127.0.0.1.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ssl_context = ctx

        self.messages = []      # every <message/> received, as dicts
        self.iqs = {}           # id -> dict of the <iq/> response received
        self.raw_iqs = {}       # id -> the <iq/> response received, as XML
        self.failed_auths = []  # every SASL <failure/>
        self.stream_errors = []
        self.sent_mechs = []    # mechanism attribute of every <auth/> sent
        self.connects = 0       # TCP connections opened
        self.disconnects = 0
        self.outcome = None     # "session", "failed_all_auth", "disconnected", ...
        self.outcome_changed = asyncio.Event()
        self.on_failed_auth = None  # optional hook(client, failure)

        self.register_handler(Callback("e2e messages", MatchXPath("{%s}message" % NS_CLIENT), self._message))
        self.register_handler(Callback("e2e iqs", MatchXPath("{%s}iq" % NS_CLIENT), self._iq))
        self.add_filter("out", self._out_filter)
        self.add_event_handler("session_start", self._session_start)
        self.add_event_handler("failed_auth", self._failed_auth)
        self.add_event_handler("failed_all_auth", lambda _: self._set_outcome("failed_all_auth"))
        self.add_event_handler("stream_error", self._stream_error)
        self.add_event_handler("connecting", self._connecting)
        self.add_event_handler("connection_failed", self._connection_failed)
        self.add_event_handler("disconnected", self._disconnected)

    async def get_dns_records(self, domain, port=None):
        """The address given with --addr, as it is: slixmpp would otherwise
        resolve the domain (and with an IP address as host it resolves its
        default_domain on its default port)."""
        host, port = self.address
        return [(host, host, port)]

    # --- event handlers -------------------------------------------------

    def _set_outcome(self, o):
        if self.outcome is None or o == "session":
            self.outcome = o
        self.outcome_changed.set()

    def _connecting(self, _):
        self.connects += 1

    def _connection_failed(self, err):
        # slixmpp would retry for ever with a growing delay: give up at once.
        emit("connection_failed", client=self.name, error=str(err))
        self.cancel_connection_attempt()
        self._set_outcome("connection_failed")

    def _disconnected(self, reason):
        self.disconnects += 1
        emit("disconnected", client=self.name, reason=str(reason or ""))
        self._set_outcome("disconnected")

    def _session_start(self, _):
        self._set_outcome("session")

    def _out_filter(self, stanza):
        if stanza.xml.tag == "{urn:ietf:params:xml:ns:xmpp-sasl}auth":
            self.sent_mechs.append(stanza.xml.get("mechanism", ""))
        return stanza

    def _failed_auth(self, failure):
        f = {
            "mech": self["feature_mechanisms"].mech.name,
            "conditions": [c for c in children(failure.xml) if c != "text"],
            "xml": str(failure),
        }
        self.failed_auths.append(f)
        emit("failed_auth", client=self.name, **f)
        if self.on_failed_auth is not None:
            # Runs before slixmpp picks its next mechanism on this stream.
            self.on_failed_auth(self, f)

    def _stream_error(self, err):
        e = {
            "conditions": [c for c in children(err.xml) if c != "text"],
            "text": err["text"],
            "xml": str(err),
        }
        self.stream_errors.append(e)
        emit("stream_error", client=self.name, **e)

    def _message(self, msg):
        xml = msg.xml
        body = xml.find("{%s}body" % NS_CLIENT)
        m = {
            "from": xml.get("from", ""),
            "to": xml.get("to", ""),
            "type": xml.get("type", ""),
            "id": xml.get("id", ""),
            "body": body.text if body is not None and body.text is not None else "",
            "error": stanza_error(xml),
        }
        self.messages.append(m)
        emit("message", client=self.name, **m)

    def _iq(self, iq):
        xml = iq.xml
        typ = xml.get("type", "")
        if typ not in ("result", "error"):
            return
        r = {
            "id": xml.get("id", ""),
            "from": xml.get("from", ""),
            "to": xml.get("to", ""),
            "type": typ,
            "error": stanza_error(xml),
        }
        self.raw_iqs[r["id"]] = xml
        self.iqs[r["id"]] = r

    # --- actions --------------------------------------------------------

    async def login(self, required=True):
        """Connects and waits for the session to start (or fail)."""
        host, port = self.opts.addr.rsplit(":", 1)
        step("%s: login to %s" % (self.name, self.opts.addr))
        if self.opts.direct_tls:
            self.connect((host, int(port)), use_ssl=True, force_starttls=False, disable_starttls=True)
        else:
            self.connect((host, int(port)))
        while self.outcome is None:
            self.outcome_changed.clear()
            await self.outcome_changed.wait()
        if self.outcome != "session":
            if required:
                fail("%s could not log in: %s" % (self.name, self.outcome))
            return False
        tls = ""
        if self.transport is not None:
            so = self.transport.get_extra_info("ssl_object")
            if so is not None:
                tls = so.version()
        emit("login", client=self.name, jid=self.boundjid.full,
             mech=self["feature_mechanisms"].mech.name, sent_mechs=self.sent_mechs,
             tls=tls, starttls="starttls" in self.features, connects=self.connects,
             disconnects=self.disconnects)
        return True

    async def await_iq(self, iq_id):
        while iq_id not in self.iqs:
            await asyncio.sleep(0.01)
        return self.iqs[iq_id]

    async def sync(self):
        """One round trip to the server: the server handles a client's
        stanzas in order, so everything sent before has been processed (and
        any error for it queued to us) when the answer arrives."""
        iq_id = "sync-" + self.new_id()
        step("%s: sync %s" % (self.name, iq_id))
        self.send("<iq type='get' id='%s' to='%s'><query xmlns='urn:treff:e2e:sync'/></iq>"
                      % (iq_id, self.boundjid.domain))
        await self.await_iq(iq_id)

    async def presence(self, priority=None, unavailable=False, decoy=False):
        """Sends broadcast presence and waits until the server processed it.
        decoy puts, before <priority/>, an extension element in another
        namespace that has a child named priority (value 100): it is not
        the presence's priority (RFC 6121 4.7.2.3 is jabber:client's)."""
        step("%s: presence priority=%s unavailable=%s decoy=%s" % (self.name, priority, unavailable, decoy))
        p = self.make_presence(ppriority=priority, ptype="unavailable" if unavailable else None)
        if decoy:
            ext = ET.Element("{urn:treff:e2e:decoy}info")
            ET.SubElement(ext, "{urn:treff:e2e:decoy}priority").text = "100"
            p.xml.insert(0, ext)
        p.send()
        await self.sync()

    async def wait_message(self, pred, what):
        step("%s: wait for %s" % (self.name, what))
        while True:
            for m in self.messages:
                if pred(m):
                    return m
            await asyncio.sleep(0.01)

    async def close(self):
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 3)
        except Exception as e:  # a close that goes wrong is not the test's subject
            logging.getLogger("e2e").debug("%s: close: %r", self.name, e)


def fail(msg):
    raise ScenarioError(msg)


class ScenarioError(Exception):
    pass


# --- scenarios ------------------------------------------------------------

async def chat(o, clients):
    """alice sends bob's bare JID a chat message; bob reports it."""
    alice = Client("alice", o.jid, o.password, o, o.mech)
    bob = Client("bob", o.peer, o.peer_password, o, o.mech)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    await bob.presence()
    step("alice: send")
    alice.send_message(mto=o.to or slixmpp.JID(o.peer).bare, mbody=o.body, mtype="chat")
    await bob.wait_message(lambda m: m["type"] != "error", "alice's message")
    # Whatever the server routed for alice's message is queued to bob before
    # alice's round trip ends, and reaches bob before his own: a duplicate
    # or an error would show.
    await alice.sync()
    await bob.sync()


async def badauth(o, clients):
    """Logs in with a wrong password; after --fail-times failures the
    right password is put in, and slixmpp's next attempt (on the same
    stream, with the next mechanism) must succeed."""
    c = Client("client", o.jid, o.password, o, o.mech)
    clients.append(c)

    def hook(client, failure):
        if len(client.failed_auths) >= o.fail_times and o.right_password:
            client.password = o.right_password
    c.on_failed_auth = hook
    await c.login(required=False)
    emit("auth_result", client=c.name, outcome=c.outcome, failures=len(c.failed_auths),
         sent_mechs=c.sent_mechs, connects=c.connects)


async def send_to(o, clients):
    """Sends one chat message to --to and reports what comes back."""
    c = Client("alice", o.jid, o.password, o, o.mech)
    clients.append(c)
    await c.login()
    step("alice: send to %s" % o.to)
    c.send_message(mto=o.to, mbody=o.body, mtype="chat")
    await c.sync()
    if o.expect_reply:
        await c.wait_message(lambda m: True, "a reply")


async def iq(o, clients):
    """Sends an IQ get in an unknown namespace to each --iq-to and reports
    the responses."""
    c = Client("alice", o.jid, o.password, o, o.mech)
    clients.append(c)
    await c.login()
    for i, to in enumerate(o.iq_to):
        iq_id = "unknown-%d" % i
        to_attr = " to='%s'" % to if to else ""
        step("alice: iq %s to %r" % (iq_id, to))
        c.send("<iq type='get' id='%s'%s><query xmlns='urn:treff:e2e:no-such-namespace'/></iq>" % (iq_id, to_attr))
        r = await c.await_iq(iq_id)
        emit("iq", client=c.name, sent_to=to, **r)


async def route(o, clients):
    """Sessions of one account are online, each given as
    --session RESOURCE=PRESENCES: a comma-separated list of the broadcast
    presences it sends in turn, each a priority ("5", "-1"), optionally
    with "+decoy" (see Client.presence), or "unavailable"; "none" or
    nothing for no presence at all. Then the sender sends one chat message
    to the bare JID, and one to each full JID. Each session reports
    everything it got up to its own full-JID message (which the server
    queues after any bare-JID delivery), the sender everything that came
    back."""
    bare = slixmpp.JID(o.jid).bare
    sessions = []
    for spec in o.session:
        res, _, presences = spec.partition("=")
        c = Client(res, bare + "/" + res, o.password, o, o.mech)
        c.presences = [] if presences in ("", "none") else presences.split(",")
        sessions.append(c)
    clients += sessions
    await asyncio.gather(*(c.login() for c in sessions))

    async def send_presences(c):
        for p in c.presences:
            decoy = p.endswith("+decoy")
            p = p.removesuffix("+decoy")
            if p == "unavailable":
                await c.presence(unavailable=True, decoy=decoy)
            else:
                await c.presence(int(p), decoy=decoy)
    await asyncio.gather(*(send_presences(c) for c in sessions))
    sender = Client("sender", o.peer, o.peer_password, o, o.mech)
    clients.append(sender)
    await sender.login()
    step("sender: send")
    sender.send_message(mto=bare, mbody="bare " + o.body, mtype="chat")
    for c in sessions:
        sender.send_message(mto=c.boundjid.full, mbody="full %s %s" % (c.boundjid.resource, o.body), mtype="chat")
    await sender.sync()
    for c in sessions:
        want = "full %s %s" % (c.boundjid.resource, o.body)
        await c.wait_message(lambda m, want=want: m["body"] == want, "its full-JID message")
        emit("received", client=c.name, jid=c.boundjid.full, presences=c.presences,
             bodies=[m["body"] for m in c.messages if m["type"] != "error"])
    emit("received", client=sender.name, jid=sender.boundjid.full,
         bodies=[m["body"] for m in sender.messages if m["type"] != "error"],
         errors=[{"from": m["from"], **(m["error"] or {})} for m in sender.messages if m["type"] == "error"])


async def conflict(o, clients):
    """Two logins with the same full JID: the first must be thrown out with
    a <conflict/> stream error; the second keeps the resource."""
    first = Client("first", o.jid, o.password, o, o.mech)
    clients.append(first)
    await first.login()
    await first.presence()
    second = Client("second", o.jid, o.password, o, o.mech)
    clients.append(second)
    await second.login()
    step("first: wait for the stream to end")
    while first.disconnects == 0:
        await asyncio.sleep(0.01)
    # Let the server finish ending the old session too (it must not take
    # the new one out of the session table with it).
    await asyncio.sleep(0.3)
    # The new session is the one that gets messages for the full JID.
    await second.presence()
    step("second: message to itself")
    second.send_message(mto=second.boundjid.full, mbody=o.body, mtype="chat")
    await second.wait_message(lambda m: m["body"] == o.body, "its own message")
    await asyncio.sleep(0.2)  # anything misrouted to the old stream would have shown by now
    emit("conflict_result", first_jid=first.boundjid.full, second_jid=second.boundjid.full,
         first_stream_errors=first.stream_errors, first_messages=len(first.messages),
         first_disconnects=first.disconnects, first_connects=first.connects)


async def disco(o, clients):
    """Asks the server's disco#info with slixmpp's XEP-0030 and reports its
    identities, features and the fields of its extended forms (XEP-0128;
    contact addresses, XEP-0157)."""
    c = Client("alice", o.jid, o.password, o, o.mech)
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0128")
    clients.append(c)
    await c.login()
    step("alice: disco#info of the server")
    info = await c["xep_0030"].get_info(jid=c.boundjid.domain, timeout=10)
    forms = {}
    for sub in info["disco_info"].iterables:
        if sub.name != "x":
            continue
        fields = {}
        for var, field in sub.get_fields().items():
            v = field.get_value(convert=False)
            fields[var] = v if isinstance(v, list) else [v]
        form_type = fields.pop("FORM_TYPE", [""])[0]
        forms[form_type] = fields
    emit("disco", client=c.name, features=sorted(info["disco_info"]["features"]), forms=forms)


SCENARIOS = {"chat": chat, "badauth": badauth, "send": send_to, "iq": iq, "route": route, "conflict": conflict, "disco": disco}


def build_parser(scenarios=None, description=__doc__):
    """The command line of a script with the given scenarios (by default
    these): the options every scenario shares and those of the scenarios
    here. Scripts built on this one (im.py) add their own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(scenarios or SCENARIOS))
    p.add_argument("--addr", required=True, help="server address IP:port (STARTTLS, or direct TLS with --direct-tls)")
    p.add_argument("--direct-tls", action="store_true", help="TLS from the first byte (XEP-0368)")
    p.add_argument("--cert", required=True, help="PEM file with the server's certificate, trusted")
    p.add_argument("--mech", default=None, help="force this SASL mechanism")
    p.add_argument("--timeout", type=float, default=20, help="seconds for the whole scenario")
    p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--peer", default="")
    p.add_argument("--peer-password", default="")
    p.add_argument("--to", default="")
    p.add_argument("--body", default="hello")
    p.add_argument("--right-password", default="")
    p.add_argument("--fail-times", type=int, default=1)
    p.add_argument("--expect-reply", action="store_true")
    p.add_argument("--iq-to", action="append", default=[])
    p.add_argument("--session", action="append", default=[], help="RESOURCE=PRIORITY")
    return p


def parse_args(argv):
    return build_parser().parse_args(argv)


async def main(o, scenarios=None):
    scenarios = scenarios or SCENARIOS
    clients = []
    try:
        await asyncio.wait_for(scenarios[o.scenario](o, clients), o.timeout)
    except asyncio.TimeoutError:
        states = ", ".join("%s: %s" % (c.name, c.outcome or "not logged in") for c in clients)
        msg = "e2e client: timeout after %gs in scenario %s, step: %s (clients: %s)" % (
            o.timeout, o.scenario, STEP, states or "none")
        emit("timeout", step=STEP, message=msg)
        print(msg, file=sys.stderr, flush=True)
        return 3
    except ScenarioError as e:
        emit("error", message=str(e), step=STEP)
        print("e2e client: %s" % e, file=sys.stderr, flush=True)
        return 2
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    emit("done")
    return 0


def run(opts, scenarios=None):
    """Runs the scenario opts.scenario and exits with its code."""
    logging.basicConfig(level=logging.DEBUG if opts.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = asyncio.run(main(opts, scenarios))
    sys.stdout.flush()
    sys.stderr.flush()
    # Do not linger in interpreter shutdown with slixmpp's leftovers.
    os._exit(code)


if __name__ == "__main__":
    run(parse_args(sys.argv[1:]))
