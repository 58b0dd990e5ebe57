// ws.mjs: XMPP over WebSocket (RFC 7395) with xmpp.js (@xmpp/client), for
// ../web_test.go. The peer is another client (slixmpp over TCP) that the
// test runs while this one waits.
//
//   NODE_EXTRA_CA_CERTS=DATA/cert.pem node ws.mjs \
//       --service wss://127.0.0.1:5281/xmpp-websocket \
//       --jid alice@localhost --password PW --peer bob@localhost \
//       --body TEXT [--resource xmppjs-ws] [--wait 20] [--timeout 30]
//
// The client (named "alice" in the events) logs in over the WebSocket (the
// certificate is checked: trust the server's with NODE_EXTRA_CA_CERTS),
// sends its presence, makes one round trip to the server and prints
// "ready"; then it waits for a chat message from the peer (any resource),
// answers it with a chat message with body TEXT to the sender's full JID,
// makes another round trip (so the server has routed the answer) and
// closes the stream with <close/>.
//
// Every WebSocket message the client gets is checked to hold exactly one
// whole element (<open/>, <close/> or a stanza or nonza), as RFC 7395
// section 3.3.3 requires; the "frames" event counts them.
//
// Output: one JSON object per line, each with "event" and "client":
//   login    {jid, mech, protocol, url}   after the session starts
//   ready    {}                           presence sent and processed
//   message  {from, to, type, id, body}   a message received
//   stanza   {xml}                        any other stanza received
//   frames   {in, out, largest_in, largest_out, partial}  at the end; partial
//            lists (the first 200 characters of) every message received that
//            was not exactly one whole element
//   offline  {}                           the stream was closed
//   done     {}                           last line of a success
// On failure: {"event":"error","message":...,"step":...} and exit 1, or
// {"event":"timeout","step":...} and exit 3 when --timeout runs out. Every
// wait for the server or the peer is bounded by --wait seconds.

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import FramedParser from "@xmpp/websocket/lib/FramedParser.js";
import WS from "ws";
import { Script } from "./script.mjs";

const { values: opts } = parseArgs({
  options: {
    service: { type: "string" },
    jid: { type: "string" },
    password: { type: "string" },
    peer: { type: "string" },
    resource: { type: "string", default: "xmppjs-ws" },
    body: { type: "string", default: "hello" },
    wait: { type: "string", default: "20" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["service", "jid", "password", "peer"]) {
  if (!opts[k]) {
    console.error(`ws.mjs: --${k} is required`);
    process.exit(2);
  }
}
const waitMs = Number(opts.wait) * 1000;
const name = "alice";

const sc = new Script(opts, name);
const emit = (obj) => sc.emit(obj);
const debug = (...args) => sc.debug(...args);
function at(s) {
  sc.step = s;
  debug("step:", s);
}

function wholeElement(data) {
  const p = new FramedParser();
  let n = 0;
  let bad = false;
  for (const ev of ["element", "start", "end"]) p.on(ev, () => n++);
  p.on("error", () => (bad = true));
  try {
    p.write(data);
  } catch {
    bad = true;
  }
  return !bad && n === 1 && !p.cursor;
}

// The WebSocket class xmpp.js uses (Node 20 has none of its own): ws, with
// every message in and out counted and checked.
const frames = { in: 0, out: 0, largest_in: 0, largest_out: 0, partial: [] };
class CountingWebSocket extends WS {
  constructor(url, protocols) {
    super(url, protocols);
    this.on("message", (data, isBinary) => {
      const text = isBinary ? null : data.toString("utf8");
      frames.in++;
      frames.largest_in = Math.max(frames.largest_in, data.length);
      if (text === null || !wholeElement(text)) {
        frames.partial.push(isBinary ? "(binary)" : text.slice(0, 200));
      }
    });
  }

  send(data, ...rest) {
    frames.out++;
    frames.largest_out = Math.max(frames.largest_out, Buffer.byteLength(data));
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = CountingWebSocket;

const [local, domain] = opts.jid.split("@");
const xmpp = client({
  service: opts.service,
  domain,
  username: local,
  password: opts.password,
  resource: opts.resource,
  timeout: waitMs,
});
// A failure must end the scenario, not start it over.
xmpp.reconnect.stop();
let mech = null;
xmpp.on("error", (err) => debug("error", err));
xmpp.on("send", (el) => {
  debug("SEND", el.toString());
  if ((el.name === "auth" || el.name === "authenticate") && el.attrs.mechanism) mech = el.attrs.mechanism;
});
xmpp.on("element", (el) => debug("RECV", el.toString()));

const received = [];
const waiters = [];
xmpp.on("stanza", (el) => {
  received.push(el);
  if (el.name === "message") {
    emit({
      event: "message", client: name, from: el.attrs.from ?? "", to: el.attrs.to ?? "",
      type: el.attrs.type ?? "normal", id: el.attrs.id ?? "", body: el.getChildText("body") ?? "",
    });
  } else if (!(el.name === "iq" && (el.attrs.type === "result" || el.attrs.type === "error"))) {
    emit({ event: "stanza", client: name, xml: el.toString() });
  }
  for (const w of [...waiters]) {
    if (w.match(el)) {
      waiters.splice(waiters.indexOf(w), 1);
      clearTimeout(w.timer);
      w.resolve(el);
    }
  }
});

// waitFor resolves with the first stanza received (before or after the
// call) that match accepts, or rejects after --wait.
function waitFor(what, match) {
  const el = received.find(match);
  if (el) return Promise.resolve(el);
  return new Promise((resolve, reject) => {
    const w = { match, resolve };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error(`${name}: no ${what} within ${opts.wait}s`));
    }, waitMs);
    waiters.push(w);
  });
}

// roundTrip sends a disco#info query to the server and waits for its
// reply: the server handles a client's stanzas in order, so everything
// sent before has been routed when the reply arrives.
let iqs = 0;
async function roundTrip() {
  const id = `sync-${++iqs}`;
  const reply = waitFor(`reply to ${id}`, (el) => el.name === "iq" && el.attrs.id === id);
  await xmpp.send(xml("iq", { type: "get", to: domain, id }, xml("query", { xmlns: "http://jabber.org/protocol/disco#info" })));
  await reply;
}

async function main() {
  at("login");
  const address = await xmpp.start();
  emit({
    event: "login", client: name, jid: address.toString(), mech,
    protocol: xmpp.socket?.socket?.protocol ?? "", url: xmpp.socket?.socket?.url ?? "",
  });

  at("presence");
  await xmpp.send(xml("presence"));
  await roundTrip();
  emit({ event: "ready", client: name });

  at("wait for the peer's message");
  const peer = opts.peer.toLowerCase();
  const m = await waitFor(`chat message from ${peer}`, (el) => el.name === "message" &&
    (el.attrs.from ?? "").toLowerCase().startsWith(peer + "/") && el.getChild("body"));

  at("answer");
  await xmpp.send(xml("message", { to: m.attrs.from, type: "chat", id: "ws-answer" }, xml("body", {}, opts.body)));
  await roundTrip();

  at("stop");
  await xmpp.stop();
  emit({ event: "frames", client: name, ...frames });
  emit({ event: "offline", client: name });
}

sc.run(main);
