#!/usr/bin/python3
"""Certificate scenarios for the Go end-to-end test internal/e2e/acme_test.go:
a client sees the certificate the server presents, checked against --ca
for the account's domain (the name is checked too: the client connects to
an address but verifies the domain, as a real client does after an SRV
lookup), and keeps its session while the server's certificate changes.

Usage: /usr/bin/python3 certs.py [options] SCENARIO

Scenarios:

    login   one client (--jid) logs in over direct TLS (--addr) and reports
            the certificate, then pings the server (XEP-0199).
    change  client "before" logs in and reports the certificate; pause
            "change" (the test changes the server's certificate); "before"
            pings the server on its old stream (its session must be
            alive), then client "after" logs in on a new connection and
            reports the certificate it gets.

Prints JSON lines on stdout: {"event": "cert", "client", "serial" (hex,
lower case, no leading zeros), "issuer" (common name), "subject_alt_names"},
{"event": "pong", "client", "connects" (TCP connections the client
opened so far)}, {"event": "pause", "name"} (go on after a
line "go" on standard input), and {"event": "done"} last. Exits 1 on a
failure (with a message on stderr), 3 when --timeout passes.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys

import slixmpp


def emit(event, **fields):
    fields["event"] = event
    print(json.dumps(fields), flush=True)


def fail(msg):
    print("certs.py: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


class Client(slixmpp.ClientXMPP):
    def __init__(self, name, o):
        # SCRAM-SHA-256 without channel binding, saying so ("n"): slixmpp
        # 1.8 would try tls-unique first, which TLS 1.3 lacks (see
        # slix.py's forced_without_binding).
        super().__init__(o.jid + "/" + name, o.password, sasl_mech="SCRAM-SHA-256")
        fm = self["feature_mechanisms"]
        creds = fm.sasl_callback

        def no_binding(required, optional):
            c = creds(required, optional)
            if "channel_binding" in c:
                c["channel_binding"] = None
            return c

        fm.sasl_callback = no_binding
        self.name = name
        self.opts = o
        self.use_aiodns = False
        self.use_ipv6 = False
        self.whitespace_keepalive = False
        # SNI and the checked name: the domain (default_domain), although
        # the connection goes to an address.
        self.default_domain = self.boundjid.domain
        ctx = ssl.create_default_context(cafile=o.ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ssl_context = ctx
        self.register_plugin("xep_0199")
        self.started = asyncio.get_event_loop().create_future()
        self.connects = 0  # TCP connections opened (1 unless it reconnected)
        self.add_event_handler("connected", self.on_connected)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", lambda _: self.finish("failed_auth"))
        self.add_event_handler("connection_failed", lambda e: self.finish("connection_failed: %s" % e))
        self.add_event_handler("disconnected", lambda _: self.finish("disconnected"))

    def finish(self, outcome):
        if not self.started.done():
            self.started.set_result(outcome)

    def on_connected(self, _):
        self.connects += 1

    async def on_start(self, _):
        self.finish("session")

    async def login(self):
        host, port = self.opts.addr.rsplit(":", 1)
        self.connect((host, int(port)), use_ssl=True, force_starttls=False, disable_starttls=True)
        outcome = await asyncio.wait_for(self.started, self.opts.wait)
        if outcome != "session":
            fail("%s could not log in: %s" % (self.name, outcome))
        cert = self.transport.get_extra_info("peercert")
        if not cert:
            fail("%s: no verified peer certificate" % self.name)
        issuer = ""
        for rdn in cert.get("issuer", ()):
            for k, v in rdn:
                if k == "commonName":
                    issuer = v
        emit("cert", client=self.name, serial=cert["serialNumber"].lower().lstrip("0"),
             issuer=issuer, subject_alt_names=[v for k, v in cert.get("subjectAltName", ()) if k == "DNS"])

    async def ping(self):
        try:
            await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=self.opts.wait)
        except Exception as e:
            fail("%s: ping: %r" % (self.name, e))
        emit("pong", client=self.name, connects=self.connects)


async def pause(name):
    emit("pause", name=name)
    line = await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        fail("after pause %s: got %r instead of go" % (name, line))


async def scenario(o):
    if o.scenario == "login":
        c = Client("only", o)
        await c.login()
        await c.ping()
        c.disconnect()
    else:
        before = Client("before", o)
        await before.login()
        await pause("change")
        await before.ping()
        after = Client("after", o)
        await after.login()
        await after.ping()
        before.disconnect()
        after.disconnect()
    emit("done")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["login", "change"])
    p.add_argument("--addr", required=True, help="host:port of the direct TLS listener")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--ca", required=True, help="PEM file of the CA certificates to trust")
    p.add_argument("--wait", type=float, default=10)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--debug", action="store_true")
    o = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if o.debug else logging.ERROR, stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(o), o.timeout))
    except asyncio.TimeoutError:
        print("certs.py: timed out after %ss" % o.timeout, file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
