// muc.mjs: a group chat scenario (XEP-0045) driven by xmpp.js
// (@xmpp/client), a second client library next to slixmpp, for
// ../xmppjs_test.go.
//
//   NODE_EXTRA_CA_CERTS=DATA/cert.pem node muc.mjs --addr 127.0.0.1:5222 \
//       --jid alice@localhost --password PW --peer bob@localhost --peer-password PW2 \
//       --room lounge [--service conference.localhost] [--body TEXT] [--wait 10] [--timeout 30]
//
// Both clients log in over TCP with STARTTLS (the certificate is checked:
// trust the server's with NODE_EXTRA_CA_CERTS). The first (named "alice" in
// the events, whatever its JID) creates ROOM@SERVICE as nick "alice" and
// unlocks it with an empty muc#owner submit; the second ("bob") joins as
// nick "bob"; each sends a groupchat message ("alice BODY", "bob BODY") and
// waits for both; each sends the other a private message through the room
// ("private from alice BODY", ...); alice kicks bob (muc#admin, role none);
// bob rejoins and leaves, then alice leaves; both close their streams.
//
// Output: one JSON object per line, each with "event" and "client":
//   login        {jid, tls, authorized, mech}         after the session starts
//   step         {name}                               before each step of the scenario
//   muc_presence {from, type, codes, item, error}     a presence from the room
//                (item: {affiliation, role, jid, nick, reason})
//   muc_message  {from, type, body, subject, muc_user, delay, error}
//   iq_reply     {label, type, error}                 reply to an IQ the script sent
//   stanza       {xml}                                any other stanza received
//   offline      {}                                   the stream was closed
//   done         {}                                   last line of a success
// On failure: {"event":"error","message":...,"step":...} and exit 1, or
// {"event":"timeout","step":...} and exit 3 when --timeout runs out. Every
// wait for the server is bounded by --wait seconds.

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import { Script } from "./script.mjs";

const NS_MUC = "http://jabber.org/protocol/muc";
const NS_MUC_USER = NS_MUC + "#user";
const NS_MUC_OWNER = NS_MUC + "#owner";
const NS_MUC_ADMIN = NS_MUC + "#admin";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_DELAY = "urn:xmpp:delay";

const { values: opts } = parseArgs({
  options: {
    addr: { type: "string" },
    jid: { type: "string" },
    password: { type: "string" },
    peer: { type: "string" },
    "peer-password": { type: "string" },
    room: { type: "string", default: "xmppjs" },
    service: { type: "string", default: "conference.localhost" },
    body: { type: "string", default: "hello" },
    wait: { type: "string", default: "10" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["addr", "jid", "password", "peer", "peer-password"]) {
  if (!opts[k]) {
    console.error(`muc.mjs: --${k} is required`);
    process.exit(2);
  }
}
const waitMs = Number(opts.wait) * 1000;
const room = `${opts.room}@${opts.service}`;

const sc = new Script(opts, "");
const emit = (obj) => sc.emit(obj);
const debug = (...args) => sc.debug(...args);

function stanzaError(el) {
  const e = el.getChild("error");
  if (!e) return null;
  return {
    type: e.attrs.type ?? "",
    conditions: e.children
      .filter((c) => typeof c !== "string" && c.attrs.xmlns === NS_STANZAS && c.name !== "text")
      .map((c) => c.name),
    text: e.getChildText("text", NS_STANZAS) ?? "",
  };
}

// A client: the xmpp.js entity, every stanza it received (in order) and
// the waits pending on them.
class Peer {
  constructor(name, jid, password) {
    const [local, domain] = jid.split("@");
    this.name = name;
    this.nick = name;
    this.received = [];
    this.waiters = [];
    this.mech = null;
    this.xmpp = client({
      service: `xmpp://${opts.addr}`,
      domain,
      username: local,
      password,
      resource: `xmppjs-${name}`,
      timeout: waitMs,
    });
    // A failure must end the scenario, not start it over.
    this.xmpp.reconnect.stop();
    this.xmpp.on("error", (err) => debug(name, "error", err));
    this.xmpp.on("send", (el) => {
      debug(name, "SEND", el.toString());
      if ((el.name === "auth" || el.name === "authenticate") && el.attrs.mechanism) this.mech = el.attrs.mechanism;
    });
    this.xmpp.on("element", (el) => debug(name, "RECV", el.toString()));
    this.xmpp.on("stanza", (el) => this.#onStanza(el));
  }

  #onStanza(el) {
    this.received.push(el);
    this.#report(el);
    for (const w of [...this.waiters]) {
      if (w.match(el)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(el);
      }
    }
  }

  #report(el) {
    const from = el.attrs.from ?? "";
    const inRoom = from === room || from.startsWith(room + "/");
    if (el.name === "iq" && (el.attrs.type === "result" || el.attrs.type === "error") && this.labels?.has(el.attrs.id)) {
      emit({ event: "iq_reply", client: this.name, label: this.labels.get(el.attrs.id),
        type: el.attrs.type, error: stanzaError(el) });
    } else if (el.name === "presence" && inRoom) {
      const x = el.getChild("x", NS_MUC_USER);
      const item = x?.getChild("item");
      emit({
        event: "muc_presence", client: this.name, from, type: el.attrs.type ?? "",
        codes: (x?.getChildren("status") ?? []).map((s) => Number(s.attrs.code)),
        item: item ? { affiliation: item.attrs.affiliation ?? "", role: item.attrs.role ?? "",
          jid: item.attrs.jid ?? "", nick: item.attrs.nick ?? "", reason: item.getChildText("reason") } : null,
        error: stanzaError(el),
      });
    } else if (el.name === "message" && inRoom) {
      const delay = el.getChild("delay", NS_DELAY);
      emit({
        event: "muc_message", client: this.name, from, type: el.attrs.type ?? "normal",
        body: el.getChildText("body"), subject: el.getChildText("subject"),
        muc_user: el.getChild("x", NS_MUC_USER) !== undefined,
        delay: delay ? { from: delay.attrs.from ?? "", stamp: delay.attrs.stamp ?? "" } : null,
        error: stanzaError(el),
      });
    } else if (!(el.name === "iq" && el.attrs.type === "result" && this.xmpp.status !== "online")) {
      // Anything else but the resource binding reply.
      emit({ event: "stanza", client: this.name, xml: el.toString() });
    }
  }

  // waitFor resolves with the first stanza received (before or after the
  // call) that match accepts, or rejects after --wait.
  waitFor(what, match) {
    const el = this.received.find(match);
    if (el) return Promise.resolve(el);
    return new Promise((resolve, reject) => {
      const w = { match, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no ${what} within ${opts.wait}s`));
      }, waitMs);
      this.waiters.push(w);
    });
  }

  async start() {
    const address = await this.xmpp.start();
    const sock = this.xmpp.socket?.socket; // the TLSSocket inside @xmpp/tls's wrapper
    emit({
      event: "login", client: this.name, jid: address.toString(),
      tls: typeof sock?.getProtocol === "function" ? sock.getProtocol() : "",
      authorized: sock?.authorized ?? false, mech: this.mech,
    });
  }

  send(el) {
    return this.xmpp.send(el);
  }

  // iq sends an IQ and waits for its reply (result or error), reported as
  // an iq_reply event with label.
  async iq(label, type, to, child) {
    const id = `${label}-${Math.random().toString(36).slice(2)}`;
    (this.labels ??= new Map()).set(id, label);
    const reply = this.waitFor(`reply to ${label}`, (el) => el.name === "iq" && el.attrs.id === id &&
      (el.attrs.type === "result" || el.attrs.type === "error"));
    await this.send(xml("iq", { type, to, id }, child));
    const el = await reply;
    if (el.attrs.type !== "result") throw new Error(`${this.name}: ${label}: ${el.toString()}`);
    return el;
  }

  occupant(nick) {
    return `${room}/${nick}`;
  }

  // presenceFrom waits for a presence from room/nick of the given type
  // ("" for available) carrying every status code in codes.
  presenceFrom(nick, type, codes = [], after = 0) {
    const from = this.occupant(nick);
    return this.waitFor(`${type || "available"} presence from ${from} with codes [${codes}]`, (el) => {
      if (el.name !== "presence" || el.attrs.from !== from || (el.attrs.type ?? "") !== type) return false;
      if (this.received.indexOf(el) < after) return false;
      const got = (el.getChild("x", NS_MUC_USER)?.getChildren("status") ?? []).map((s) => s.attrs.code);
      return codes.every((c) => got.includes(String(c)));
    });
  }

  messageFrom(nick, type, body) {
    const from = this.occupant(nick);
    return this.waitFor(`${type} message from ${from} with body ${JSON.stringify(body)}`, (el) =>
      el.name === "message" && el.attrs.from === from && el.attrs.type === type &&
      el.getChildText("body") === body && !el.getChild("delay", NS_DELAY));
  }

  join() {
    return this.send(xml("presence", { to: this.occupant(this.nick) }, xml("x", { xmlns: NS_MUC })));
  }

  leave() {
    return this.send(xml("presence", { to: this.occupant(this.nick), type: "unavailable" }));
  }

  async stop() {
    await this.xmpp.stop();
    emit({ event: "offline", client: this.name });
  }
}

const alice = new Peer("alice", opts.jid, opts.password);
const bob = new Peer("bob", opts.peer, opts["peer-password"]);

function at(name) {
  sc.step = name;
  emit({ event: "step", client: "", name });
}

async function main() {
  at("login");
  await Promise.all([alice.start(), bob.start()]);

  at("create");
  await alice.join();
  await alice.presenceFrom("alice", "", [110, 201]);

  at("configure");
  await alice.iq("configure", "set", room,
    xml("query", { xmlns: NS_MUC_OWNER }, xml("x", { xmlns: "jabber:x:data", type: "submit" })));

  at("join");
  await bob.join();
  await bob.presenceFrom("bob", "", [110]);
  await alice.presenceFrom("bob", "");

  at("groupchat");
  const aliceBody = `alice ${opts.body}`;
  const bobBody = `bob ${opts.body}`;
  await alice.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, aliceBody)));
  // The room has alice's message before bob sends his: the history that
  // bob gets when he rejoins has them in this order (two connections give
  // no order by themselves).
  await alice.messageFrom("alice", "groupchat", aliceBody);
  await bob.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, bobBody)));
  await Promise.all([
    alice.messageFrom("alice", "groupchat", aliceBody), alice.messageFrom("bob", "groupchat", bobBody),
    bob.messageFrom("alice", "groupchat", aliceBody), bob.messageFrom("bob", "groupchat", bobBody),
  ]);

  at("private");
  const alicePrivate = `private from alice ${opts.body}`;
  const bobPrivate = `private from bob ${opts.body}`;
  await alice.send(xml("message", { to: alice.occupant("bob"), type: "chat" },
    xml("body", {}, alicePrivate), xml("x", { xmlns: NS_MUC_USER })));
  await bob.send(xml("message", { to: bob.occupant("alice"), type: "chat" },
    xml("body", {}, bobPrivate), xml("x", { xmlns: NS_MUC_USER })));
  await Promise.all([bob.messageFrom("alice", "chat", alicePrivate), alice.messageFrom("bob", "chat", bobPrivate)]);

  at("kick");
  const aliceMark = alice.received.length;
  await alice.iq("kick", "set", room, xml("query", { xmlns: NS_MUC_ADMIN },
    xml("item", { nick: "bob", role: "none" }, xml("reason", {}, "xmpp.js kick"))));
  await Promise.all([bob.presenceFrom("bob", "unavailable", [110, 307]),
    alice.presenceFrom("bob", "unavailable", [307], aliceMark)]);

  at("rejoin");
  const bobMark = bob.received.length;
  const aliceMark2 = alice.received.length;
  await bob.join();
  await bob.presenceFrom("bob", "", [110], bobMark);
  await alice.presenceFrom("bob", "", [], aliceMark2);

  at("leave");
  const bobMark2 = bob.received.length;
  const aliceMark3 = alice.received.length;
  await bob.leave();
  await Promise.all([bob.presenceFrom("bob", "unavailable", [110], bobMark2),
    alice.presenceFrom("bob", "unavailable", [], aliceMark3)]);
  const aliceMark4 = alice.received.length;
  await alice.leave();
  await alice.presenceFrom("alice", "unavailable", [110], aliceMark4);

  at("stop");
  await Promise.all([alice.stop(), bob.stop()]);
}

sc.run(main);
