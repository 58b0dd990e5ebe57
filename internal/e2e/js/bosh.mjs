// bosh.mjs: StanzaJS (the "stanza" package), a web client library, logs
// in over BOSH (XEP-0124/XEP-0206) or WebSocket (RFC 7395) and chats with
// a peer, for ../bosh_test.go.
//
//   node bosh.mjs --url http://127.0.0.1:PORT/http-bind [--transport bosh|websocket] \
//       --jid alice@localhost --password PW --peer bob@localhost/desk \
//       [--body TEXT] [--wait 10] [--timeout 30] [--debug]
//
// The client logs in (SASL, stream restart, bind; stream management if the
// server offers it), sends available presence, sends the peer a chat
// message with BODY, waits for a message from the peer (its reply comes
// through a held BOSH request or the WebSocket), then disconnects.
//
// Output: one JSON object per line, each with "event" and "client"
// ("alice"):
//   login    {jid, mech, transport}     after the session started
//   sent     {to, id, body}             the message to the peer
//   message  {from, type, body}         a message received
//   offline  {}                         the stream ended
//   done     {}                         last line of a success
// On failure: {"event":"error","message":...,"step":...} and exit 1, or
// {"event":"timeout","step":...} and exit 3 when --timeout runs out. Every
// wait for the server is bounded by --wait seconds.

import { parseArgs } from "node:util";
import * as XMPP from "stanza";
import { Script } from "./script.mjs";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    transport: { type: "string", default: "bosh" },
    jid: { type: "string" },
    password: { type: "string" },
    peer: { type: "string" },
    body: { type: "string", default: "hello" },
    wait: { type: "string", default: "10" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["url", "jid", "password", "peer"]) {
  if (!opts[k]) {
    console.error(`bosh.mjs: --${k} is required`);
    process.exit(2);
  }
}
if (opts.transport !== "bosh" && opts.transport !== "websocket") {
  console.error("bosh.mjs: --transport is bosh or websocket");
  process.exit(2);
}
const waitMs = Number(opts.wait) * 1000;
const name = "alice";

const sc = new Script(opts, name);
const emit = (obj) => sc.emit(obj);
const debug = (...args) => sc.debug(...args);

function until(client, what, event, match = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, handler);
      reject(new Error(`no ${what} within ${opts.wait}s`));
    }, waitMs);
    function handler(...args) {
      if (!match(...args)) return;
      clearTimeout(timer);
      client.off(event, handler);
      resolve(args);
    }
    client.on(event, handler);
  });
}

const client = XMPP.createClient({
  jid: opts.jid,
  password: opts.password,
  resource: "stanzajs",
  transports: opts.transport === "bosh"
    ? { bosh: opts.url, websocket: false }
    : { websocket: opts.url, bosh: false },
});

let mech = "";
client.on("raw:outgoing", (data) => {
  debug("SEND", data);
  const m = /<auth [^>]*mechanism=["']([^"']+)["']/.exec(data);
  if (m) mech = m[1];
});
client.on("raw:incoming", (data) => debug("RECV", data));
client.on("stream:error", (err) => debug("stream error", err));
for (const ev of ["bosh:terminate", "stream:end", "disconnected", "session:end"]) {
  client.on(ev, () => debug("EVENT", ev));
}
client.on("auth:failed", () => sc.fail(new Error("authentication failed")));
client.on("message", (msg) => {
  emit({ event: "message", client: name, from: msg.from ?? "", type: msg.type ?? "normal", body: msg.body ?? null });
});

async function main() {
  sc.step = "login";
  const started = until(client, "session start", "session:started");
  client.connect();
  await started;
  emit({ event: "login", client: name, jid: client.jid, mech, transport: opts.transport });

  sc.step = "presence";
  client.sendPresence();

  sc.step = "chat";
  const reply = until(client, "reply from the peer", "message", (msg) => msg.from === opts.peer && msg.body);
  const id = client.sendMessage({ to: opts.peer, type: "chat", body: opts.body });
  emit({ event: "sent", client: name, to: opts.peer, id, body: opts.body });
  await reply;

  sc.step = "disconnect";
  // The end of the stream: the terminate body (BOSH) or <close/>
  // (WebSocket). StanzaJS 12.22.1 does not always emit "disconnected"
  // after a BOSH terminate: a write queued while it disconnects waits
  // for a transport that has ended.
  const ended = until(client, "end of the stream", "stream:end");
  client.disconnect();
  await ended;
  emit({ event: "offline", client: name });
}

sc.run(main);
