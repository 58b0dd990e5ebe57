#!/usr/bin/python3
"""The slixmpp side of the web client tests (web_test.go,
webdriver_test.go): a user on TCP who meets a web client (Converse.js in
a browser) in a group chat.

Usage: /usr/bin/python3 web.py [common options] SCENARIO [scenario options]

Built on slix.py, im.py and muc.py: the same options (--wait bounds each
wait for the server and for the web client), the same JSON lines and exit
codes. The test runs this script in the background and reads its lines as
they come: "ready" says when the web client may start.

Scenarios:

    muc_wait  bob creates --room as an instant room (empty owner form),
              sends the groupchat message --early if given (for the
              room's history), prints "ready", waits for a live groupchat message with
              --body from another occupant, answers with a groupchat
              message --reply, makes a round trip and leaves.
    echo      bob (--jid, with its resource) prints "ready", waits for a
              chat message with --body from a JID starting with --from,
              and answers it with "reply BODY" (as the StanzaJS scenario
              js/bosh.mjs expects).
"""

import sys

import muc
import slix
from slix import emit, step


async def muc_wait(o, clients):
    bob = muc.MUCClient("bob", o.jid, o.password, o)
    clients.append(bob)
    await bob.login()
    room = muc.room_jid(o, o.room)
    await bob.create(room, "bob")
    if o.early:
        await bob.groupchat(room, o.early)
        await bob.wait_muc_message(lambda m: m["from"] == room + "/bob" and m["body"] == o.early, "his early message")
    emit("ready", client=bob.name, room=room)

    def theirs(m):
        return (m["type"] == "groupchat" and m["body"] == o.body and m["delay"] is None
                and m["from"].startswith(room + "/") and m["from"] != room + "/bob")
    await bob.wait_muc_message(theirs, "a groupchat message from another occupant")
    step("bob: reply")
    await bob.groupchat(room, o.reply)
    await bob.wait_muc_message(lambda m: m["from"] == room + "/bob" and m["body"] == o.reply, "his own reply")
    await bob.sync()


async def echo(o, clients):
    bob = slix.Client("bob", o.jid, o.password, o)
    clients.append(bob)
    await bob.login()
    emit("ready", client=bob.name, jid=bob.boundjid.full)
    m = await bob.wait_message(lambda m: m["type"] == "chat" and m["body"] == o.body and m["from"].startswith(o.from_prefix),
                               "a chat message from %s" % o.from_prefix)
    step("bob: reply")
    bob.send_message(mto=m["from"], mbody="reply " + o.body, mtype="chat")
    await bob.sync()


SCENARIOS = {"muc_wait": muc_wait, "echo": echo}


if __name__ == "__main__":
    p = slix.build_parser(SCENARIOS, __doc__)
    p.add_argument("--wait", type=float, default=5, help="seconds for each wait")
    p.add_argument("--service", default="conference.localhost", help="the group chat service")
    p.add_argument("--room", default="web", help="local part of the room")
    p.add_argument("--reply", default="hello from slixmpp", help="muc_wait: bob's answer")
    p.add_argument("--early", default="", help="muc_wait: a message bob sends before the web client comes")
    p.add_argument("--from", dest="from_prefix", default="", help="echo: the sender's JID or its start")
    slix.run(p.parse_args(sys.argv[1:]), SCENARIOS)
