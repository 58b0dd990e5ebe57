#!/usr/bin/python3
"""HTTP File Upload scenarios (XEP-0363) for the Go end-to-end tests in
internal/e2e, through slixmpp's own xep_0363 plugin.

Usage: /usr/bin/python3 upload.py [common options] SCENARIO [scenario options]

Built on slix.py: the same options, the same kind of JSON lines on stdout
(ending with {"event": "done"}) and the same exit codes.

Scenarios:

    upload   discovers the upload service of the user's server, then
             uploads each --file with xep_0363's upload_file (slot
             request, then an HTTP PUT through aiohttp) and prints
             "uploaded" with the GET URL, or "upload_error" with what
             went wrong (the stanza error, FileTooBig or the HTTP status)
    slot     discovers the service and requests one slot of --size bytes
             with xep_0363's request_slot, without the plugin's own size
             check, and prints "slot" or "slot_error" (with the
             max-file-size of a <file-too-large/> element)

Events:

    service       the upload service found by disco and its max-file-size

slixmpp 1.8.3 trap: find_upload_service (used by upload_file when no
service is configured) goes through xep_0030's get_info_from_domain, which
hands coroutines to asyncio.wait, refused by Python 3.11 ("Passing
coroutines is forbidden"). The script discovers the service itself (disco
items of the domain, disco info of each) and sets the plugin's
upload_service and max_file_size as find_upload_service would.
"""

import asyncio
import os
import sys

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0363.http_upload import FileTooBig, HTTPError

import slix
from slix import emit, fail, step

NS_UPLOAD = "urn:xmpp:http:upload:0"


async def discover(c, o):
    """Finds the upload service like xep_0363.find_upload_service and
    configures the plugin with it."""
    disco = c["xep_0030"]
    domain = c.boundjid.domain
    step("%s: disco#items %s" % (c.name, domain))
    items = await disco.get_items(jid=domain, timeout=o.wait)
    for item in items["disco_items"]["items"]:
        step("%s: disco#info %s" % (c.name, item[0]))
        try:
            info = await disco.get_info(jid=item[0], timeout=o.wait)
        except (IqError, IqTimeout):
            continue
        identities = info["disco_info"]["identities"]
        features = info["disco_info"]["features"]
        if not any(i[0] == "store" and i[1] == "file" for i in identities) or NS_UPLOAD not in features:
            continue
        plugin = c["xep_0363"]
        plugin.upload_service = info["from"]
        max_size = None
        for form in info["disco_info"].iterables:
            values = form["values"]
            if values.get("FORM_TYPE") == [NS_UPLOAD]:
                max_size = int(values["max-file-size"])
                plugin.max_file_size = max_size
        emit("service", client=c.name, jid=str(info["from"]), max_file_size=max_size)
        return info["from"]
    fail("no upload service found on %s" % domain)


def error_of(iq):
    """The stanza error of an IQ: type, conditions, text, and the
    max-file-size of a <file-too-large/> (None without one)."""
    err = slix.stanza_error(iq.xml) or {}
    big = iq.xml.find("{jabber:client}error/{%s}file-too-large/{%s}max-file-size" % (NS_UPLOAD, NS_UPLOAD))
    retry = iq.xml.find("{jabber:client}error/{%s}retry" % NS_UPLOAD)
    err["max_file_size"] = int(big.text) if big is not None else None
    err["retry"] = retry.get("stamp") if retry is not None else None
    return err


def new_client(o):
    c = slix.Client("alice", o.jid, o.password, o, o.mech)
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0128")
    c.register_plugin("xep_0363")
    return c


async def upload(o, clients):
    c = new_client(o)
    clients.append(c)
    await c.login()
    await discover(c, o)
    for path in o.file:
        name = os.path.basename(path)
        step("%s: upload %s" % (c.name, name))
        try:
            url = await c["xep_0363"].upload_file(path, timeout=o.wait)
            emit("uploaded", client=c.name, file=name, url=url)
        except IqError as e:
            emit("upload_error", client=c.name, file=name, kind="stanza", error=error_of(e.iq))
        except FileTooBig as e:
            emit("upload_error", client=c.name, file=name, kind="FileTooBig", size=e.args[0], max_file_size=e.args[1])
        except HTTPError as e:
            emit("upload_error", client=c.name, file=name, kind="http", status=e.args[0])
        except IqTimeout:
            fail("%s: no answer to the slot request for %s" % (c.name, name))


async def slot(o, clients):
    c = new_client(o)
    clients.append(c)
    await c.login()
    service = await discover(c, o)
    step("%s: request a slot of %d bytes" % (c.name, o.size))
    try:
        iq = await c["xep_0363"].request_slot(service, o.filename, o.size, o.content_type, timeout=o.wait)
        s = iq["http_upload_slot"]
        emit("slot", client=c.name, put=s["put"]["url"], get=s["get"]["url"])
    except IqError as e:
        emit("slot_error", client=c.name, error=error_of(e.iq))
    except IqTimeout:
        fail("%s: no answer to the slot request" % c.name)


SCENARIOS = {"upload": upload, "slot": slot}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--file", action="append", default=[], help="upload: a file to upload")
    p.add_argument("--size", type=int, default=0, help="slot: the requested size")
    p.add_argument("--filename", default="file.bin", help="slot: the requested file name")
    p.add_argument("--content-type", default="application/octet-stream", help="slot: the requested content type")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
