// sasl2.mjs: login with XEP-0388 SASL2 and XEP-0386 Bind 2, and XEP-0198
// resumption inline in SASL2, with xmpp.js (@xmpp/client 0.14 bundles
// @xmpp/sasl2, its Bind 2 and @xmpp/stream-management), for
// ../xmppjs_test.go.
//
//   NODE_EXTRA_CA_CERTS=DATA/cert.pem node sasl2.mjs \
//       --service xmpp://127.0.0.1:5222 (or wss://127.0.0.1:5281/xmpp-websocket) \
//       --jid alice@localhost --password PW --peer bob@localhost --peer-password PW2 \
//       --ua-id UUID --tag TAG [--mech SCRAM-SHA-1|PLAIN] --body TEXT [--wait 10] [--timeout 30]
//
// alice logs in with the user agent id and the Bind 2 tag (the client's
// resource option) and the mechanism; xmpp.js enables stream management
// inside Bind 2. bob logs in. alice's connection is cut (her socket
// destroyed, no closing of the stream); bob sends her a chat message and
// makes a round trip to the server (so it routed the message); alice
// reconnects, which xmpp.js does by resuming inline in SASL2; the message
// arrives. alice and bob close their streams; then a new client with
// alice's user agent id and tag logs in (a fresh session of the same
// device) and closes.
//
// Output: one JSON object per line, each with "event" and "client":
//   login      {jid, authenticate, success, sm_id}  after a login; authenticate
//              and success describe the SASL2 elements ({mechanism, resume,
//              bind, bind_enable_sm} and {aid, resumed, bound, enabled}), or
//              are null if the client used none
//   cut        {}                       alice's connection is gone
//   sent       {}                       bob's message is routed
//   resumed    {jid, authenticate, success, writes, received}  alice resumed;
//              writes are the client's writes on the new connection after
//              TLS, up to the resumption ({n, what}: their first 60
//              characters); received are the names of the top-level
//              elements that arrived since, in order
//   message    {from, to, body}         a message alice got
//   done       {}                       last line of a success
// On failure: {"event":"error",...} and exit 1; {"event":"timeout",...} and
// exit 3 when --timeout runs out. Every wait is bounded by --wait seconds.

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import WS from "ws";
import { Script } from "./script.mjs";

const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_BIND2 = "urn:xmpp:bind:0";
const NS_SM = "urn:xmpp:sm:3";

const { values: opts } = parseArgs({
  options: {
    service: { type: "string" },
    addr: { type: "string" }, // ignored: the harness passes it
    jid: { type: "string" },
    password: { type: "string" },
    peer: { type: "string" },
    "peer-password": { type: "string" },
    "ua-id": { type: "string" },
    fast: { type: "boolean", default: false },
    tag: { type: "string", default: "xmppjs" },
    mech: { type: "string", default: "SCRAM-SHA-1" },
    body: { type: "string", default: "hello" },
    wait: { type: "string", default: "10" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["service", "jid", "password", "peer", "peer-password", "ua-id"]) {
  if (!opts[k]) {
    console.error(`sasl2.mjs: --${k} is required`);
    process.exit(2);
  }
}
const waitMs = Number(opts.wait) * 1000;
const sc = new Script(opts, "");
const emit = (obj) => sc.emit(obj);
const debug = (...args) => sc.debug(...args);
function at(s) {
  sc.step = s;
  debug("step:", s, Date.now() % 100000);
}

// Node 20 has no WebSocket of its own.
globalThis.WebSocket ??= WS;

// within rejects after --wait.
function within(what, p) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${opts.wait}s`)), waitMs);
    }),
  ]);
}

class Peer {
  constructor(name, jid, password, { ua, tag, mech, useFast = false } = {}) {
    const [local, domain] = jid.split("@");
    this.name = name;
    this.received = [];
    this.waiters = [];
    this.auth = null; // the last <authenticate/> sent
    this.success = null; // the last <success/> received
    this.recording = null; // writes and received names, while set
    const userAgent = ua ? xml("user-agent", { id: ua }, xml("software", {}, "treff e2e")) : undefined;
    this.xmpp = client({
      service: opts.service,
      domain,
      resource: tag,
      userAgent,
      // The mechanism is the scenario's choice, not the client's first.
      // With --fast, a FAST token (XEP-0484) when there is one: xmpp.js
      // then tries its HT mechanism first.
      credentials: async (authenticate, mechanisms, fast) => {
        if (!mechanisms.includes(mech)) throw new Error(`${name}: ${mech} not offered: ${mechanisms}`);
        const token = useFast ? await fast?.fetch() : undefined;
        await authenticate({ username: local, password, token }, mech, userAgent);
      },
      timeout: waitMs,
    });
    // Reconnecting is the scenario's step.
    this.xmpp.reconnect.stop();
    // FAST tokens in memory, for this client's reconnection.
    let token = null;
    this.xmpp.fast.fetchToken = async () => token;
    this.xmpp.fast.saveToken = async (t) => { token = t; };
    this.xmpp.fast.deleteToken = async () => { token = null; };
    const write = this.xmpp.write.bind(this.xmpp);
    this.xmpp.write = (s) => {
      if (this.recording && this.xmpp.isSecure() && String(s) !== "") this.recording.writes.push(String(s).slice(0, 60));
      return write(s);
    };
    this.xmpp.on("error", (err) => debug(name, "error", err));
    this.xmpp.on("send", (el) => {
      debug(name, "SEND", el.toString());
      if (el.is("authenticate", NS_SASL2)) {
        const bind = el.getChild("bind", NS_BIND2);
        this.auth = {
          mechanism: el.attrs.mechanism,
          resume: el.getChild("resume", NS_SM) !== undefined,
          fast: el.getChild("fast", "urn:xmpp:fast:0") !== undefined,
          request_token: el.getChild("request-token", "urn:xmpp:fast:0") !== undefined,
          bind: bind !== undefined,
          bind_enable_sm: bind?.getChild("enable", NS_SM) !== undefined,
        };
      }
    });
    this.xmpp.on("element", (el) => {
      debug(name, "RECV", el.toString());
      this.recording?.received.push(el.name);
      if (el.is("success", NS_SASL2)) {
        const bound = el.getChild("bound", NS_BIND2);
        this.success = {
          aid: el.getChildText("authorization-identifier"),
          resumed: el.getChild("resumed", NS_SM) !== undefined,
          bound: bound !== undefined,
          enabled: bound?.getChild("enabled", NS_SM) !== undefined,
        };
      }
    });
    this.xmpp.on("stanza", (el) => {
      this.received.push(el);
      if (el.name === "message") {
        emit({ event: "message", client: this.name, from: el.attrs.from ?? "", to: el.attrs.to ?? "",
          body: el.getChildText("body") });
      }
      for (const w of [...this.waiters]) {
        if (w.match(el)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(el);
        }
      }
    });
  }

  waitFor(what, match) {
    const el = this.received.find(match);
    if (el) return Promise.resolve(el);
    return within(`${this.name}: ${what}`, new Promise((resolve) => this.waiters.push({ match, resolve })));
  }

  async start() {
    const address = await this.xmpp.start();
    emit({ event: "login", client: this.name, jid: address.toString(), authenticate: this.auth,
      success: this.success, sm_id: this.xmpp.streamManagement.id });
  }

  // ping makes a round trip to the server.
  async ping() {
    await this.xmpp.iqCaller.request(xml("iq", { type: "get", to: this.xmpp.jid.domain },
      xml("ping", { xmlns: "urn:xmpp:ping" })), waitMs);
  }

  // cut destroys the connection under the stream, as a network loss
  // would: no </stream:stream>.
  async cut() {
    const gone = new Promise((resolve) => this.xmpp.once("disconnect", resolve));
    const s = this.xmpp.socket?.socket;
    if (typeof s?.destroy === "function") s.destroy(); // TCP/TLS
    else if (typeof s?.terminate === "function") s.terminate(); // ws
    else throw new Error(`${this.name}: no socket to cut`);
    await within(`${this.name}: disconnect`, gone);
  }

  // resume reconnects; xmpp.js resumes the session in SASL2.
  async resume() {
    this.recording = { writes: [], received: [] };
    this.auth = this.success = null;
    const sm = this.xmpp.streamManagement;
    const resumed = new Promise((resolve, reject) => {
      sm.once("resumed", resolve);
      this.xmpp.once("error", reject);
    });
    await within(`${this.name}: reconnect`, this.xmpp.reconnect.reconnect());
    await within(`${this.name}: resumption`, resumed);
    const rec = this.recording;
    // What the client wrote to resume; what arrives later stays in
    // received.
    const writes = { n: rec.writes.length, what: [...rec.writes] };
    emit({ event: "resumed", client: this.name, jid: this.xmpp.jid.toString(), authenticate: this.auth,
      success: this.success, writes });
    return rec;
  }
}

const aliceOpts = { ua: opts["ua-id"], tag: opts.tag, mech: opts.mech, useFast: opts.fast };
const alice = new Peer("alice", opts.jid, opts.password, aliceOpts);
const bob = new Peer("bob", opts.peer, opts["peer-password"], { mech: opts.mech });

sc.run(async () => {
  at("login");
  await alice.start();
  await bob.start();
  if (!alice.xmpp.streamManagement.enabled) throw new Error("alice: stream management not enabled");

  at("cut");
  const aliceJID = alice.xmpp.jid.toString();
  await alice.cut();
  emit({ event: "cut", client: "alice" });

  at("send");
  await bob.xmpp.send(xml("message", { to: aliceJID, type: "chat", id: "while-away" }, xml("body", {}, opts.body)));
  await bob.ping();
  emit({ event: "sent", client: "bob" });

  at("resume");
  const rec = await alice.resume();
  await alice.waitFor("bob's message", (el) => el.name === "message" && el.getChildText("body") === opts.body);
  emit({ event: "received", client: "alice", names: rec.received });
  alice.recording = null;

  at("close");
  await alice.xmpp.stop();
  await bob.xmpp.stop();

  at("again");
  const again = new Peer("alice2", opts.jid, opts.password, aliceOpts);
  again.xmpp.on("error", () => {});
  await again.start();
  await again.xmpp.stop();
});
