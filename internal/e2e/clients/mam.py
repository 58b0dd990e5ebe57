#!/usr/bin/python3
"""Message archive scenarios (XEP-0313) for the Go end-to-end tests in
internal/e2e, driven through slixmpp's xep_0313 plugin.

Usage: /usr/bin/python3 mam.py [common options] SCENARIO [scenario options]

Built on slix.py: the same options, the same kind of JSON lines on stdout
(one object per line, ending with {"event": "done"}) and the same exit
codes. Every wait for something the server should send is bounded by
--wait seconds (and the whole scenario by --timeout).

Scenarios:

    converse   alice (--jid) and bob (--peer) log in and exchange --count
               chat messages in turn (alice first), each waiting for the
               last to arrive; prints "exchanged" for each, with the
               stanza-ids the recipient saw (by, id).
    retrieve   a new client of --jid asks its bare JID for its features,
               then fetches its archive with the plugin's RSM iterator,
               --max messages a page, optionally filtered by --with,
               --start and --end, and backward from the end of the archive
               with --reverse; prints "features", one "page" per page (its
               results and its <fin/>) and "retrieved".
    query      logs in --jid, asks for its bare JID's features and sends a
               plain archive query; prints "features" and "query_reply"
               (the reply's type and error condition).
"""

import asyncio
import sys

from slixmpp.exceptions import IqError, IqTimeout

import slix
from slix import NS_CLIENT, emit, fail, step

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_RSM = "http://jabber.org/protocol/rsm"


class MAMClient(slix.Client):
    """A slix.Client with the archive plugins that also records the
    stanza-ids of the messages it receives. Archive results are not
    reported as messages (the plugin collects them)."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts, opts.mech)
        for p in ("xep_0030", "xep_0059", "xep_0297", "xep_0203", "xep_0313"):
            self.register_plugin(p)
        self.stanza_ids = {}  # body -> [(by, id)] of each received message

    def _message(self, msg):
        if msg.xml.find("{%s}result" % NS_MAM) is not None:
            return
        super()._message(msg)
        body = msg.xml.find("{%s}body" % NS_CLIENT)
        if body is not None:
            ids = [(s.get("by", ""), s.get("id", "")) for s in msg.xml.findall("{%s}stanza-id" % NS_SID)]
            self.stanza_ids[body.text or ""] = ids

    async def own_features(self):
        """The features of the client's own bare JID (XEP-0030)."""
        step("%s: disco#info of %s" % (self.name, self.boundjid.bare))
        r = await self["xep_0030"].get_info(jid=self.boundjid.bare, timeout=self.opts.wait)
        feats = sorted(r["disco_info"]["features"])
        emit("features", client=self.name, jid=self.boundjid.bare, features=feats)
        return feats


async def wait_for(what, cond, wait):
    step(what)
    for _ in range(int(wait * 100)):
        if cond():
            return
        await asyncio.sleep(0.01)
    fail("waited %gs for %s" % (wait, what))


async def converse(o, clients):
    alice = MAMClient("alice", o.jid, o.password, o)
    bob = MAMClient("bob", o.peer, o.peer_password, o)
    clients += [alice, bob]
    await asyncio.gather(alice.login(), bob.login())
    await asyncio.gather(alice.presence(), bob.presence())
    for i in range(o.count):
        sender, receiver = (alice, bob) if i % 2 == 0 else (bob, alice)
        body = "%s %d" % (o.body, i)
        sender.send_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
        await wait_for("%s: message %d" % (receiver.name, i), lambda: body in receiver.stanza_ids, o.wait)
        ids = receiver.stanza_ids[body]
        emit("exchanged", index=i, sender=sender.boundjid.full, receiver=receiver.boundjid.bare, body=body,
             stanza_ids=[{"by": by, "id": sid} for by, sid in ids])
        # Distinct delay stamps (milliseconds), for the time filters.
        await asyncio.sleep(0.01)


def describe_result(msg):
    """One archive result as received: its id and queryid, the delay stamp
    and the forwarded message's addresses and body."""
    res = msg.xml.find("{%s}result" % NS_MAM)
    fwd = res.find("{%s}forwarded" % NS_FORWARD) if res is not None else None
    delay = fwd.find("{%s}delay" % NS_DELAY) if fwd is not None else None
    inner = fwd.find("{%s}message" % NS_CLIENT) if fwd is not None else None
    body = inner.find("{%s}body" % NS_CLIENT) if inner is not None else None
    return {
        "id": res.get("id", "") if res is not None else "",
        "queryid": res.get("queryid", "") if res is not None else "",
        "result_from": msg.xml.get("from", ""),
        "stamp": delay.get("stamp", "") if delay is not None else "",
        "from": inner.get("from", "") if inner is not None else "",
        "to": inner.get("to", "") if inner is not None else "",
        "body": (body.text or "") if body is not None else "",
    }


async def retrieve(o, clients):
    c = MAMClient("alice", o.jid, o.password, o)
    clients.append(c)
    await c.login()
    await c.own_features()
    step("alice: retrieve")
    it = c["xep_0313"].retrieve(with_jid=o.with_jid or None, start=o.start or None, end=o.end or None,
                                iterator=True, rsm={"max": o.max}, reverse=o.reverse)
    it.iq_options = {"timeout": o.wait}
    total = 0
    pages = 0
    async for page in it:
        pages += 1
        if pages > 100:
            fail("more than 100 pages")
        fin = page.xml.find("{%s}fin" % NS_MAM)
        rsm = fin.find("{%s}set" % NS_RSM) if fin is not None else None

        def text(tag):
            el = rsm.find("{%s}%s" % (NS_RSM, tag)) if rsm is not None else None
            return (el.text or "") if el is not None else ""
        first = rsm.find("{%s}first" % NS_RSM) if rsm is not None else None
        results = [describe_result(m) for m in page["mam"]["results"]]
        total += len(results)
        emit("page", client=c.name, results=results, first=text("first"), last=text("last"),
             count=text("count"), first_index=first.get("index", "") if first is not None else "",
             complete=fin.get("complete", "") if fin is not None else "", queryid=page["id"])
        if o.reverse:
            # slixmpp 1.8.3's iterator takes first index + page size ==
            # count for the end of the set also when paging backward (it
            # is the end only going forward): it would stop after the
            # first page. Going on until the server sends an empty page
            # (no <first/>, no <last/>) ends it correctly.
            it._stop = False
    emit("retrieved", client=c.name, total=total, pages=pages)


async def query(o, clients):
    c = MAMClient("alice", o.jid, o.password, o)
    clients.append(c)
    await c.login()
    await c.own_features()
    step("alice: plain query")
    iq = c.make_iq_set()
    iq.enable("mam")
    try:
        r = await iq.send(timeout=o.wait)
        emit("query_reply", client=c.name, type=r["type"], condition="")
    except IqError as e:
        emit("query_reply", client=c.name, type="error", condition=e.iq["error"]["condition"])
    except IqTimeout:
        fail("no answer to the archive query")


SCENARIOS = {"converse": converse, "retrieve": retrieve, "query": query}


def parse_args(argv):
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds to wait for each thing the server should send")
    p.add_argument("--count", type=int, default=25)
    p.add_argument("--max", type=int, default=10)
    p.add_argument("--with", dest="with_jid", default="")
    p.add_argument("--start", default="")
    p.add_argument("--end", default="")
    p.add_argument("--reverse", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    slix.run(parse_args(sys.argv[1:]), SCENARIOS)
