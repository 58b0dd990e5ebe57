// mucmod.mjs: group chat moderation (XEP-0425, urn:xmpp:message-moderate:1)
// and retraction (XEP-0424, urn:xmpp:message-retract:1) driven by xmpp.js
// (@xmpp/client), a second client library next to slixmpp
// (clients/mucmod.py), for ../mucmod_test.go.
//
//   NODE_EXTRA_CA_CERTS=DATA/cert.pem node mucmod.mjs --addr 127.0.0.1:5222 \
//       --jid alice@localhost --password PW --peer bob@localhost --peer-password PW2 \
//       --room mod [--service conference.localhost] [--body TEXT] [--reason TEXT] [--wait 10] [--timeout 30]
//
// alice creates ROOM@SERVICE (an empty muc#owner submit unlocks it) and
// asks for its disco#info; bob joins and says "BODY 1"; alice reads the
// stanza-id by the room on it. bob, no moderator, asks the room to
// retract it (an error); alice asks with REASON (a result), and bob waits
// for the notice from the room. bob says "BODY 2" and retracts it himself
// (a groupchat message with <retract id/>); alice waits for it. Then
// alice queries the room's archive (XEP-0313) and reports every result.
//
// Output: one JSON object per line, each with "event" and "client":
//   login          {jid}
//   step           {name}
//   features       {features}                      the room's disco#info features
//   sent           {body, stanza_id}               a groupchat message as alice got it
//   moderate_reply {label, type, condition}
//   notice         {from, id, moderated_by, reason} a <retract/> from the room
//   retraction     {from, id}                      bob's own retraction as alice got it
//   archive        {results: [{id, from, has_body, body, retracted, retract_id}]}
//                  (retracted: {stamp, moderated_by, reason} or null)
//   done           {}
// On failure: {"event":"error",...} and exit 1, or {"event":"timeout",...}
// and exit 3 when --timeout runs out. Every wait is bounded by --wait.

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import { Script } from "./script.mjs";

const NS_MUC = "http://jabber.org/protocol/muc";
const NS_MUC_OWNER = NS_MUC + "#owner";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_SID = "urn:xmpp:sid:0";
const NS_MAM = "urn:xmpp:mam:2";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_RETRACT = "urn:xmpp:message-retract:1";
const NS_MODERATE = "urn:xmpp:message-moderate:1";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";

const { values: opts } = parseArgs({
  options: {
    addr: { type: "string" },
    jid: { type: "string" },
    password: { type: "string" },
    peer: { type: "string" },
    "peer-password": { type: "string" },
    room: { type: "string", default: "xmppjsmod" },
    service: { type: "string", default: "conference.localhost" },
    body: { type: "string", default: "hello" },
    reason: { type: "string", default: "" },
    wait: { type: "string", default: "10" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["addr", "jid", "password", "peer", "peer-password"]) {
  if (!opts[k]) {
    console.error(`mucmod.mjs: --${k} is required`);
    process.exit(2);
  }
}
const waitMs = Number(opts.wait) * 1000;
const room = `${opts.room}@${opts.service}`;

const sc = new Script(opts, "");
const emit = (obj) => sc.emit(obj);
const debug = (...args) => sc.debug(...args);

function condition(el) {
  const e = el.getChild("error");
  const c = e?.children.find((c) => typeof c !== "string" && c.attrs.xmlns === NS_STANZAS && c.name !== "text");
  return c?.name ?? "";
}

class Peer {
  constructor(name, jid, password) {
    const [local, domain] = jid.split("@");
    this.name = name;
    this.received = [];
    this.waiters = [];
    this.xmpp = client({ service: `xmpp://${opts.addr}`, domain, username: local, password,
      resource: `xmppjs-${name}`, timeout: waitMs });
    this.xmpp.reconnect.stop();
    this.xmpp.on("error", (err) => debug(name, "error", err));
    this.xmpp.on("send", (el) => debug(name, "SEND", el.toString()));
    this.xmpp.on("element", (el) => debug(name, "RECV", el.toString()));
    this.xmpp.on("stanza", (el) => {
      this.received.push(el);
      for (const w of [...this.waiters]) {
        if (w.match(el)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(el);
        }
      }
    });
  }

  // waitFor resolves with the first stanza received after index after
  // that match accepts, or rejects after --wait.
  waitFor(what, match, after = 0) {
    const el = this.received.slice(after).find(match);
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
    emit({ event: "login", client: this.name, jid: address.toString() });
  }

  send(el) {
    return this.xmpp.send(el);
  }

  // iq sends an IQ and returns its reply (result or error).
  async iq(type, to, child) {
    const id = `iq-${Math.random().toString(36).slice(2)}`;
    const reply = this.waitFor(`reply to ${id}`, (el) => el.name === "iq" && el.attrs.id === id &&
      (el.attrs.type === "result" || el.attrs.type === "error"));
    await this.send(xml("iq", { type, to, id }, child));
    return reply;
  }

  async join(nick) {
    const mark = this.received.length;
    await this.send(xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: NS_MUC })));
    // The subject comes last.
    await this.waitFor(`the subject of ${room}`, (el) => el.name === "message" && el.attrs.from?.startsWith(room) &&
      el.getChild("subject") !== undefined, mark);
  }

  // said waits for the groupchat message with body from room/nick and
  // returns the stanza-id by the room on it.
  async said(nick, body) {
    const el = await this.waitFor(`${body} from ${nick}`, (el) => el.name === "message" &&
      el.attrs.from === `${room}/${nick}` && el.getChildText("body") === body);
    const ids = el.getChildren("stanza-id", NS_SID).filter((s) => s.attrs.by === room);
    if (ids.length !== 1) throw new Error(`${this.name}: ${body} has stanza-ids ${el.toString()}`);
    emit({ event: "sent", client: this.name, body, stanza_id: ids[0].attrs.id });
    return ids[0].attrs.id;
  }

  async moderate(label, target, reason) {
    const children = [xml("retract", { xmlns: NS_RETRACT })];
    if (reason) children.push(xml("reason", {}, reason));
    const r = await this.iq("set", room, xml("moderate", { xmlns: NS_MODERATE, id: target }, ...children));
    emit({ event: "moderate_reply", client: this.name, label, type: r.attrs.type, condition: condition(r) });
  }

  stop() {
    return this.xmpp.stop();
  }
}

function retractOf(el) {
  const r = el.getChild("retract", NS_RETRACT);
  if (!r) return null;
  return { from: el.attrs.from ?? "", id: r.attrs.id ?? "",
    moderated_by: r.getChild("moderated", NS_MODERATE)?.attrs.by ?? "", reason: r.getChildText("reason") ?? "" };
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
  await alice.join("alice");
  const cfg = await alice.iq("set", room, xml("query", { xmlns: NS_MUC_OWNER }, xml("x", { xmlns: "jabber:x:data", type: "submit" })));
  if (cfg.attrs.type !== "result") throw new Error(`configure: ${cfg.toString()}`);
  const info = await alice.iq("get", room, xml("query", { xmlns: NS_DISCO_INFO }));
  emit({ event: "features", client: alice.name,
    features: (info.getChild("query", NS_DISCO_INFO)?.getChildren("feature") ?? []).map((f) => f.attrs.var) });
  await bob.join("bob");

  at("moderate");
  const spam = `${opts.body} 1`;
  await bob.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, spam)));
  const sid = await alice.said("bob", spam);
  await bob.moderate("bob", sid, "");
  await alice.moderate("alice", sid, opts.reason);
  const notice = await bob.waitFor("the moderation notice", (el) => el.name === "message" && el.attrs.from === room &&
    el.getChild("retract", NS_RETRACT)?.attrs.id === sid);
  emit({ event: "notice", client: bob.name, ...retractOf(notice) });

  at("retract");
  const oops = `${opts.body} 2`;
  await bob.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, oops)));
  const own = await alice.said("bob", oops);
  await bob.send(xml("message", { to: room, type: "groupchat", id: "bob-retracts" },
    xml("retract", { xmlns: NS_RETRACT, id: own }),
    xml("fallback", { xmlns: "urn:xmpp:fallback:0", for: NS_RETRACT }),
    xml("body", {}, "/me retracted a previous message"),
    xml("store", { xmlns: "urn:xmpp:hints" })));
  const retraction = await alice.waitFor("bob's retraction", (el) => el.name === "message" &&
    el.attrs.from === `${room}/bob` && el.getChild("retract", NS_RETRACT)?.attrs.id === own);
  emit({ event: "retraction", client: alice.name, from: retraction.attrs.from, id: own });

  at("archive");
  const queryid = "q" + Math.random().toString(36).slice(2);
  const mark = alice.received.length;
  const fin = await alice.iq("set", room, xml("query", { xmlns: NS_MAM, queryid }));
  if (fin.attrs.type !== "result") throw new Error(`archive query: ${fin.toString()}`);
  const results = [];
  for (const el of alice.received.slice(mark)) {
    const res = el.name === "message" ? el.getChild("result", NS_MAM) : undefined;
    if (!res || res.attrs.queryid !== queryid) continue;
    const m = res.getChild("forwarded", NS_FORWARD)?.getChild("message");
    const rd = m?.getChild("retracted", NS_RETRACT);
    results.push({
      id: res.attrs.id ?? "", from: m?.attrs.from ?? "", has_body: m?.getChild("body") !== undefined,
      body: m?.getChildText("body") ?? "",
      retracted: rd ? { stamp: rd.attrs.stamp ?? "", moderated_by: rd.getChild("moderated", NS_MODERATE)?.attrs.by ?? "",
        reason: rd.getChildText("reason") ?? "" } : null,
      retract_id: m?.getChild("retract", NS_RETRACT)?.attrs.id ?? "",
    });
  }
  emit({ event: "archive", client: alice.name, results });

  at("stop");
  await Promise.all([alice.stop(), bob.stop()]);
}

sc.run(main);
