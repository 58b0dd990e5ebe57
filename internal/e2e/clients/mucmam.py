#!/usr/bin/python3
"""Group chat archive scenarios (XEP-0313 on a XEP-0045 room) for the Go
end-to-end tests in internal/e2e, driven through slixmpp's xep_0045 and
xep_0313 plugins.

Usage: /usr/bin/python3 mucmam.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py and muc.py: the same options (plus --wait,
--service, --room, --count, --max), the same kind of JSON lines on stdout
(one object per line, ending with {"event": "done"}) and the same exit
codes.

Scenarios:

    catchup   alice (--jid) creates --room, members-only, and makes bob
              (--peer) a member; bob joins; alice sends --count groupchat messages (--body N),
              bob waits for each and records its stanza-ids ("sent", with
              by and id); bob asks the room for its features
              ("room_features"), leaves, and fetches the room's archive
              with the plugin's RSM iterator, --max messages a page
              ("page" per page, then "retrieved"), as a member no longer
              in the room; then carol (--third), no member, asks the
              room's archive ("outsider_reply": type and error
              condition).
"""

import asyncio
import sys

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

import mam
import muc
import slix
from slix import NS_CLIENT, emit, fail, step


class Client(muc.MUCClient):
    """A MUCClient with the archive plugins, recording the stanza-ids of
    the groupchat messages it receives by body."""

    def __init__(self, name, jid, password, opts):
        super().__init__(name, jid, password, opts)
        for p in ("xep_0059", "xep_0297", "xep_0203", "xep_0313"):
            self.register_plugin(p)
        self.stanza_ids = {}

    def _message(self, msg):
        if msg.xml.find("{%s}result" % mam.NS_MAM) is not None:
            return
        super()._message(msg)
        body = msg.xml.find("{%s}body" % NS_CLIENT)
        if body is not None and msg.xml.get("type") == "groupchat":
            self.stanza_ids[body.text or ""] = [(s.get("by", ""), s.get("id", ""))
                                                for s in msg.xml.findall("{%s}stanza-id" % mam.NS_SID)]


async def catchup(o, clients):
    alice = Client("alice", o.jid, o.password, o)
    bob = Client("bob", o.peer, o.peer_password, o)
    carol = Client("carol", o.third, o.third_password, o)
    clients += [alice, bob, carol]
    await muc.login_all(alice, bob, carol)
    room = muc.room_jid(o, o.room)
    await alice.create(room, "alice", {"muc#roomconfig_membersonly": True})
    await alice.admin("member", room, alice["xep_0045"].set_affiliation(JID(room), "member", jid=JID(o.peer),
                                                                         timeout=o.wait))
    await bob.join(room, "bob")
    for i in range(o.count):
        body = "%s %d" % (o.body, i)
        alice.send_message(mto=room, mbody=body, mtype="groupchat")
        await mam.wait_for("bob: groupchat %d" % i, lambda: body in bob.stanza_ids, o.wait)
        emit("sent", index=i, body=body, stanza_ids=[{"by": by, "id": sid} for by, sid in bob.stanza_ids[body]])
    step("bob: disco#info of %s" % room)
    r = await bob["xep_0030"].get_info(jid=room, timeout=o.wait)
    emit("room_features", client=bob.name, features=sorted(r["disco_info"]["features"]))
    bob["xep_0045"].leave_muc(JID(room), "bob")
    step("bob: retrieve the archive of %s" % room)
    it = bob["xep_0313"].retrieve(jid=JID(room), iterator=True, rsm={"max": o.max})
    it.iq_options = {"timeout": o.wait}
    total = pages = 0
    async for page in it:
        pages += 1
        if pages > 100:
            fail("more than 100 pages")
        results = [mam.describe_result(m) for m in page["mam"]["results"]]
        total += len(results)
        fin = page.xml.find("{%s}fin" % mam.NS_MAM)
        emit("page", client=bob.name, results=results,
             complete=fin.get("complete", "") if fin is not None else "")
    emit("retrieved", client=bob.name, total=total, pages=pages)
    step("carol: query the archive of %s" % room)
    iq = carol.make_iq_set(ito=room)
    iq.enable("mam")
    try:
        await iq.send(timeout=o.wait)
        emit("outsider_reply", client=carol.name, type="result", condition="")
    except IqError as e:
        emit("outsider_reply", client=carol.name, type="error", condition=e.iq["error"]["condition"])
    except IqTimeout:
        fail("no answer to carol's archive query")


SCENARIOS = {"catchup": catchup}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait for the server")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--third", default="", help="the third account (carol)")
    p.add_argument("--third-password", default="")
    p.add_argument("--room", default="", help="local part of the room")
    p.add_argument("--count", type=int, default=7)
    p.add_argument("--max", type=int, default=3)
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
