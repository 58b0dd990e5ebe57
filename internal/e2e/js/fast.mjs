// fast.mjs: FAST (XEP-0484) reconnection without the password, with
// xmpp.js (@xmpp/client 0.14, which brings @xmpp/sasl2 and
// @xmpp/sasl-ht-sha-256-none), for ../fast_test.go.
//
//   NODE_EXTRA_CA_CERTS=DATA/cert.pem node fast.mjs --addr 127.0.0.1:5222 \
//       --jid alice@localhost --password PW [--client-id ID] [--wait 20] [--timeout 30]
//       [--addr2 IP:PORT]
//
// Step 1: a client with user agent id ID logs in with the password over
// SASL2 and asks for a FAST token (xmpp.js does when the server lists
// <fast/> among SASL2's inline features); the token it gets in <success/>
// is kept in memory. Step 2: a second client with the same user agent id
// and a wrong password logs in: only the token can let it in, with
// HT-SHA-256-NONE and a <fast/> element. Step 3: a third client with
// another user agent id tries the same token and must fall back to the
// (wrong) password and fail. With --addr2 (another node of the same
// domain), steps 2 and 3 connect there.
//
// Output: one JSON object per line, each with "event" and "client":
//   login   {jid, mech, fast, request_token}  after each session starts:
//           the SASL2 mechanism, whether <authenticate/> had <fast/>, and
//           whether it had <request-token/>
//   token   {mechanism, expiry, length}       the token <success/> carried
//   refused {condition}                       step 3's failure
//   done    {}                                last line of a success
// On failure: {"event":"error",...} and exit 1, or a timeout (exit 3).

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import { Script } from "./script.mjs";

const { values: opts } = parseArgs({
  options: {
    addr: { type: "string" },
    addr2: { type: "string", default: "" },
    jid: { type: "string" },
    password: { type: "string" },
    "client-id": { type: "string", default: "b2c0a2c9-5e0a-4f32-8a1e-1d0b5b3d7f11" },
    wait: { type: "string", default: "20" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});
for (const k of ["addr", "jid", "password"]) {
  if (!opts[k]) {
    console.error(`fast.mjs: --${k} is required`);
    process.exit(2);
  }
}
const sc = new Script(opts, "alice");
const [local, domain] = opts.jid.split("@");
let saved = null; // the token, as xmpp.js hands it to saveToken

// connect logs one client in and resolves with what its <authenticate/>
// carried; password and clientId as given, the token store shared.
function connect(name, password, clientId, addr = opts.addr) {
  const xmpp = client({
    service: `xmpp://${addr}`,
    domain,
    username: local,
    password,
    resource: `fast-${name}`,
    // xmpp.js 0.14 takes the SASL2 <user-agent/> element as is (its
    // default is a new random id per client).
    userAgent: xml("user-agent", { id: clientId }, xml("software", {}, "treff-e2e"), xml("device", {}, name)),
    timeout: Number(opts.wait) * 1000,
  });
  xmpp.reconnect.stop();
  xmpp.fast.fetchToken = async () => saved;
  xmpp.fast.saveToken = async (t) => {
    saved = t;
    sc.emit({ event: "token", client: name, mechanism: t.mechanism, expiry: t.expiry, length: t.token.length });
  };
  xmpp.fast.deleteToken = async () => {};
  const seen = { mech: null, fast: false, request_token: false };
  xmpp.on("send", (el) => {
    sc.debug(name, "SEND", el.toString());
    if (el.name === "authenticate") {
      seen.mech = el.attrs.mechanism;
      seen.fast = !!el.getChild("fast", "urn:xmpp:fast:0");
      seen.request_token = !!el.getChild("request-token", "urn:xmpp:fast:0");
    }
  });
  xmpp.on("element", (el) => sc.debug(name, "RECV", el.toString()));
  xmpp.on("error", (err) => sc.debug(name, "error", err));
  return new Promise((resolve, reject) => {
    xmpp.on("online", async (jid) => {
      sc.emit({ event: "login", client: name, jid: jid.toString(), ...seen });
      await xmpp.stop();
      resolve(seen);
    });
    xmpp.start().catch(reject);
  });
}

sc.run(async () => {
  sc.step = "password login";
  await connect("first", opts.password, opts["client-id"]);
  if (!saved) throw new Error("no FAST token after the password login");
  sc.step = "token login";
  const later = opts.addr2 || opts.addr;
  await connect("second", "wrong-" + opts.password, opts["client-id"], later);
  sc.step = "token of another device";
  try {
    await connect("third", "wrong-" + opts.password, "0f4c6c2e-9d6a-4d8e-b3a2-7c5e1a9b2d40", later);
    throw new Error("another device logged in with the token");
  } catch (err) {
    if (err.condition === undefined) throw err;
    sc.emit({ event: "refused", client: "third", condition: err.condition });
  }
});
