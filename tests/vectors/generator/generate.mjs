// Writes ../signatures/<scheme>.json: webhook signature test vectors shared by
// every Weir SDK (Rust, JavaScript, Python) and by the end-to-end tests.
//
// Signatures come from the providers' official libraries where one exists:
//   GitHub            @octokit/webhooks-methods  sign()
//   Stripe            stripe                     webhooks.generateTestHeaderString()
//   Standard Webhooks standardwebhooks           new Webhook(secret).sign()
// Shopify and Slack have no small official signing library (theirs are whole
// app frameworks), so their vectors follow the algorithm as the providers
// document it, with node:crypto; the Slack one is checked against the worked
// example in Slack's documentation first.
//
// Every case is then checked against the official *verifier* where there is
// one (octokit verify, stripe constructEvent, standardwebhooks verify), so a
// vector's expected outcome is the provider's outcome too, except where a
// case's `note` says why Weir is stricter.
//
// Deterministic: fixed secrets, ids and times, so regenerating without a
// library change rewrites identical files. Run: npm ci && npm run generate.

import { createHash, createHmac } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { sign as octokitSign, verifyWithFallback as octokitVerify } from "@octokit/webhooks-methods";
import Stripe from "stripe";
import { Webhook } from "standardwebhooks";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "signatures");
const version = (pkg) => JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8")).version;

// The verification time of every case ("the trigger's received-at"), and the
// tolerance the timestamped schemes are verified with.
const NOW = 1767225600; // 2026-01-01T00:00:00Z
const TOLERANCE = 300;
const EXPIRED = NOW - 2 * TOLERANCE;
const FUTURE = NOW + 2 * TOLERANCE;

// Bytes of a body are what is signed: non-ASCII text and a trailing newline
// catch any SDK that re-encodes or trims the body before verifying.
const BODY = '{"id":"evt_1","type":"order.paid","customer":"Zoë Ångström","note":"✓ 1 × €5"}\n';
const TAMPERED = BODY.replace("€5", "€6");

// Fixed, provider-shaped secrets: "current", "previous" (a rotation), and
// one the receiver never configured.
const derive = (label, n) => createHash("sha256").update(`weir vectors ${label}`).digest().subarray(0, n);
const hexSecret = (label) => derive(label, 16).toString("hex");
const whsec = (label) => `whsec_${derive(label, 24).toString("base64")}`;

const hmac = (key, data, enc) => createHmac("sha256", key).update(data, "utf8").digest(enc);

// Each scheme: its secrets, how to sign, which cases, and the official check.
const schemes = [];

// ---------------------------------------------------------------- GitHub
{
  const secrets = [`gh-${hexSecret("github current")}`, `gh-${hexSecret("github previous")}`];
  const stranger = `gh-${hexSecret("github stranger")}`;
  const header = "x-hub-signature-256";
  const sign = (secret, body) => octokitSign(secret, body);
  const cases = [
    { name: "valid", headers: { [header]: await sign(secrets[0], BODY) }, body: BODY, expect: "ok", matched_secret: 0 },
    { name: "rotated_secret", headers: { [header]: await sign(secrets[1], BODY) }, body: BODY, expect: "ok", matched_secret: 1 },
    {
      name: "uppercase_hex",
      headers: { [header]: (await sign(secrets[0], BODY)).replace(/[0-9a-f]+$/, (h) => h.toUpperCase()) },
      body: BODY,
      expect: "ok",
      matched_secret: 0,
      note: "octokit compares the header as a string and refuses upper-case hex; Weir decodes the hex, as GitHub's own docs' examples do",
    },
    { name: "tampered_body", headers: { [header]: await sign(secrets[0], BODY) }, body: TAMPERED, expect: "mismatch" },
    { name: "wrong_secret", headers: { [header]: await sign(stranger, BODY) }, body: BODY, expect: "mismatch" },
    { name: "missing_header", headers: {}, body: BODY, expect: "missing_header" },
    {
      name: "malformed_header_sha1",
      headers: { [header]: `sha1=${createHmac("sha1", secrets[0]).update(BODY).digest("hex")}` },
      body: BODY,
      expect: "malformed_header",
    },
    {
      name: "malformed_header_truncated",
      headers: { [header]: (await sign(secrets[0], BODY)).slice(0, -2) },
      body: BODY,
      expect: "malformed_header",
    },
  ];
  const official = async (c) => {
    const sig = c.headers[header];
    if (!sig) return false;
    return octokitVerify(secrets[0], c.body, sig, [secrets[1]]);
  };
  schemes.push({
    scheme: "github",
    generated_by: `@octokit/webhooks-methods ${version("@octokit/webhooks-methods")} sign(); checked with its verifyWithFallback()`,
    secrets,
    cases,
    official,
  });
}

// ---------------------------------------------------------------- Stripe
{
  const secrets = [`whsec_${hexSecret("stripe current")}`, `whsec_${hexSecret("stripe previous")}`];
  const stranger = `whsec_${hexSecret("stripe stranger")}`;
  const header = "stripe-signature";
  const sign = (secret, timestamp, body = BODY) =>
    Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });
  const v1Of = (h) => h.split(",").find((p) => p.startsWith("v1="));
  const cases = [
    { name: "valid", headers: { [header]: sign(secrets[0], NOW) }, body: BODY, expect: "ok", matched_secret: 0 },
    { name: "rotated_secret", headers: { [header]: sign(secrets[1], NOW) }, body: BODY, expect: "ok", matched_secret: 1 },
    {
      name: "several_v1_and_v0",
      headers: {
        [header]: `${sign(stranger, NOW)},${v1Of(sign(secrets[0], NOW))},v0=${"0".repeat(64)}`,
      },
      body: BODY,
      expect: "ok",
      matched_secret: 0,
    },
    {
      name: "within_tolerance",
      headers: { [header]: sign(secrets[0], NOW - TOLERANCE) },
      body: BODY,
      expect: "ok",
      matched_secret: 0,
    },
    { name: "tampered_body", headers: { [header]: sign(secrets[0], NOW) }, body: TAMPERED, expect: "mismatch" },
    {
      name: "tampered_timestamp",
      headers: { [header]: sign(secrets[0], NOW - 1).replace(`t=${NOW - 1}`, `t=${NOW}`) },
      body: BODY,
      expect: "mismatch",
    },
    { name: "wrong_secret", headers: { [header]: sign(stranger, NOW) }, body: BODY, expect: "mismatch" },
    {
      name: "expired_timestamp",
      headers: { [header]: sign(secrets[0], EXPIRED) },
      body: BODY,
      expect: "timestamp_out_of_tolerance",
      timestamp: EXPIRED,
    },
    {
      name: "future_timestamp",
      headers: { [header]: sign(secrets[0], FUTURE) },
      body: BODY,
      expect: "timestamp_out_of_tolerance",
      timestamp: FUTURE,
      note: "Stripe's libraries check only the age (past); Weir checks both directions, as Standard Webhooks does",
    },
    { name: "missing_header", headers: {}, body: BODY, expect: "missing_header" },
    {
      name: "malformed_header_timestamp",
      headers: { [header]: sign(secrets[0], NOW).replace(`t=${NOW}`, "t=yesterday") },
      body: BODY,
      expect: "malformed_header",
    },
    {
      name: "malformed_header_no_v1",
      headers: { [header]: sign(secrets[0], NOW).replace("v1=", "v0=") },
      body: BODY,
      expect: "malformed_header",
    },
  ];
  const official = async (c) => {
    const sig = c.headers[header];
    if (!sig) return false;
    return secrets.some((secret) => {
      try {
        Stripe.webhooks.constructEvent(c.body, sig, secret, TOLERANCE, undefined, NOW * 1000);
        return true;
      } catch {
        return false;
      }
    });
  };
  schemes.push({
    scheme: "stripe",
    generated_by: `stripe ${version("stripe")} webhooks.generateTestHeaderString(); checked with webhooks.constructEvent(receivedAt = now)`,
    secrets,
    tolerance_secs: TOLERANCE,
    cases,
    official,
  });
}

// ---------------------------------------------------- Standard Webhooks
{
  const secrets = [whsec("standard-webhooks current"), whsec("standard-webhooks previous")];
  const stranger = whsec("standard-webhooks stranger");
  const id = "msg_2pZ3bYyJ9qRkXw8vT1sLmN4oUe";
  const sign = (secret, timestamp, { msgId = id, body = BODY } = {}) =>
    new Webhook(secret).sign(msgId, new Date(timestamp * 1000), body);
  const headers = (signature, timestamp = NOW, msgId = id) => ({
    "webhook-id": msgId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
  });
  const without = (h, name) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== name));
  const valid = sign(secrets[0], NOW);
  const cases = [
    { name: "valid", headers: headers(valid), body: BODY, expect: "ok", matched_secret: 0 },
    { name: "rotated_secret", headers: headers(sign(secrets[1], NOW)), body: BODY, expect: "ok", matched_secret: 1 },
    {
      name: "several_signatures",
      headers: headers(`${sign(stranger, NOW)} v1a,${"A".repeat(86)}== ${valid}`),
      body: BODY,
      expect: "ok",
      matched_secret: 0,
    },
    {
      name: "within_tolerance",
      headers: headers(sign(secrets[0], NOW - TOLERANCE), NOW - TOLERANCE),
      body: BODY,
      expect: "ok",
      matched_secret: 0,
    },
    {
      name: "svix_header_names",
      headers: { "svix-id": id, "svix-timestamp": String(NOW), "svix-signature": valid },
      body: BODY,
      expect: "ok",
      matched_secret: 0,
      note: "Svix sends svix-* header names; Weir falls back to them as Svix's own libraries do (the standardwebhooks library reads only webhook-*)",
    },
    { name: "tampered_body", headers: headers(valid), body: TAMPERED, expect: "mismatch" },
    { name: "tampered_id", headers: headers(valid, NOW, "msg_forged"), body: BODY, expect: "mismatch" },
    {
      name: "tampered_timestamp",
      headers: headers(sign(secrets[0], NOW - 1), NOW),
      body: BODY,
      expect: "mismatch",
    },
    { name: "wrong_secret", headers: headers(sign(stranger, NOW)), body: BODY, expect: "mismatch" },
    {
      name: "expired_timestamp",
      headers: headers(sign(secrets[0], EXPIRED), EXPIRED),
      body: BODY,
      expect: "timestamp_out_of_tolerance",
      timestamp: EXPIRED,
    },
    {
      name: "future_timestamp",
      headers: headers(sign(secrets[0], FUTURE), FUTURE),
      body: BODY,
      expect: "timestamp_out_of_tolerance",
      timestamp: FUTURE,
    },
    { name: "missing_signature", headers: without(headers(valid), "webhook-signature"), body: BODY, expect: "missing_header" },
    { name: "missing_id", headers: without(headers(valid), "webhook-id"), body: BODY, expect: "missing_header" },
    { name: "missing_timestamp", headers: without(headers(valid), "webhook-timestamp"), body: BODY, expect: "missing_header" },
    {
      name: "malformed_timestamp",
      headers: headers(valid, "2026-01-01T00:00:00Z"),
      body: BODY,
      expect: "malformed_header",
    },
    {
      name: "malformed_signature",
      headers: headers(valid.replace("v1,", "")),
      body: BODY,
      expect: "malformed_header",
    },
  ];
  const official = async (c) => {
    // The library reads the clock; verify at the vectors' `now`.
    const realNow = Date.now;
    Date.now = () => NOW * 1000;
    try {
      return secrets.some((secret) => {
        try {
          new Webhook(secret).verify(c.body, c.headers);
          return true;
        } catch {
          return false;
        }
      });
    } finally {
      Date.now = realNow;
    }
  };
  schemes.push({
    scheme: "standard-webhooks",
    generated_by: `standardwebhooks ${version("standardwebhooks")} Webhook.sign(); checked with Webhook.verify() at now`,
    secrets,
    tolerance_secs: TOLERANCE,
    cases,
    official,
  });
}

// ---------------------------------------------------------------- Shopify
// https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook-to-ensure-its-coming-from-shopify
// X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(client secret, raw body)).
{
  const secrets = [`shpss_${hexSecret("shopify current")}`, `shpss_${hexSecret("shopify previous")}`];
  const stranger = `shpss_${hexSecret("shopify stranger")}`;
  const header = "x-shopify-hmac-sha256";
  const sign = (secret, body = BODY) => hmac(secret, body, "base64");
  const cases = [
    { name: "valid", headers: { [header]: sign(secrets[0]) }, body: BODY, expect: "ok", matched_secret: 0 },
    { name: "rotated_secret", headers: { [header]: sign(secrets[1]) }, body: BODY, expect: "ok", matched_secret: 1 },
    { name: "tampered_body", headers: { [header]: sign(secrets[0]) }, body: TAMPERED, expect: "mismatch" },
    { name: "wrong_secret", headers: { [header]: sign(stranger) }, body: BODY, expect: "mismatch" },
    { name: "missing_header", headers: {}, body: BODY, expect: "missing_header" },
    { name: "malformed_header_hex", headers: { [header]: hmac(secrets[0], BODY, "hex") }, body: BODY, expect: "malformed_header" },
    { name: "malformed_header_not_base64", headers: { [header]: "not base64!" }, body: BODY, expect: "malformed_header" },
  ];
  const official = async (c) => {
    const sig = c.headers[header];
    return !!sig && secrets.some((s) => sign(s, c.body) === sig);
  };
  schemes.push({
    scheme: "shopify",
    generated_by: "Shopify's documented algorithm (base64 HMAC-SHA256 of the raw body) with node:crypto; no official signing library",
    secrets,
    cases,
    official,
  });
}

// ---------------------------------------------------------------- Slack
// https://api.slack.com/authentication/verifying-requests-from-slack
// X-Slack-Signature: v0=hex(HMAC-SHA256(signing secret, "v0:{X-Slack-Request-Timestamp}:{raw body}")).
{
  const slackSign = (secret, timestamp, body) => `v0=${hmac(secret, `v0:${timestamp}:${body}`, "hex")}`;
  // The worked example of Slack's documentation.
  const docs = slackSign(
    "8f742231b10e8888abcd99yyyzzz85a5",
    1531420618,
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
  );
  if (docs !== "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503") {
    throw new Error(`the Slack algorithm does not reproduce Slack's documented example: ${docs}`);
  }
  const secrets = [hexSecret("slack current"), hexSecret("slack previous")];
  const stranger = hexSecret("slack stranger");
  const FORM = "token=xyz&team_id=T1&command=%2Fweir&text=Zo%C3%AB+%E2%9C%93&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1";
  const headers = (signature, timestamp = NOW) => ({
    "x-slack-request-timestamp": String(timestamp),
    "x-slack-signature": signature,
  });
  const sign = (secret, timestamp, body = FORM) => slackSign(secret, timestamp, body);
  const cases = [
    { name: "valid", headers: headers(sign(secrets[0], NOW)), body: FORM, expect: "ok", matched_secret: 0 },
    { name: "valid_json_body", headers: headers(sign(secrets[0], NOW, BODY)), body: BODY, expect: "ok", matched_secret: 0 },
    { name: "rotated_secret", headers: headers(sign(secrets[1], NOW)), body: FORM, expect: "ok", matched_secret: 1 },
    {
      name: "within_tolerance",
      headers: headers(sign(secrets[0], NOW - TOLERANCE), NOW - TOLERANCE),
      body: FORM,
      expect: "ok",
      matched_secret: 0,
    },
    { name: "tampered_body", headers: headers(sign(secrets[0], NOW, BODY)), body: TAMPERED, expect: "mismatch" },
    { name: "tampered_timestamp", headers: headers(sign(secrets[0], NOW - 1), NOW), body: FORM, expect: "mismatch" },
    { name: "wrong_secret", headers: headers(sign(stranger, NOW)), body: FORM, expect: "mismatch" },
    {
      name: "expired_timestamp",
      headers: headers(sign(secrets[0], EXPIRED), EXPIRED),
      body: FORM,
      expect: "timestamp_out_of_tolerance",
      timestamp: EXPIRED,
    },
    {
      name: "future_timestamp",
      headers: headers(sign(secrets[0], FUTURE), FUTURE),
      body: FORM,
      expect: "timestamp_out_of_tolerance",
      timestamp: FUTURE,
      note: "Slack's documentation checks only the age (past); Weir checks both directions",
    },
    { name: "missing_signature", headers: { "x-slack-request-timestamp": String(NOW) }, body: FORM, expect: "missing_header" },
    { name: "missing_timestamp", headers: { "x-slack-signature": sign(secrets[0], NOW) }, body: FORM, expect: "missing_header" },
    {
      name: "malformed_signature",
      headers: headers(sign(secrets[0], NOW).replace("v0=", "v1=")),
      body: FORM,
      expect: "malformed_header",
    },
    {
      name: "malformed_timestamp",
      headers: headers(sign(secrets[0], NOW), "now"),
      body: FORM,
      expect: "malformed_header",
    },
  ];
  // Slack's documented check: reject if the timestamp is more than five
  // minutes from now, else compare the signatures.
  const official = async (c) => {
    const ts = c.headers["x-slack-request-timestamp"];
    const sig = c.headers["x-slack-signature"];
    if (!ts || !sig || !/^\d+$/.test(ts) || NOW - Number(ts) > TOLERANCE) return false;
    return secrets.some((s) => sign(s, ts, c.body) === sig);
  };
  schemes.push({
    scheme: "slack",
    generated_by:
      "Slack's documented algorithm (v0= hex HMAC-SHA256 of \"v0:{timestamp}:{body}\") with node:crypto, checked against the documentation's worked example; no official signing library",
    secrets,
    tolerance_secs: TOLERANCE,
    cases,
    official,
  });
}

// ------------------------------------------------------------------ write
mkdirSync(outDir, { recursive: true });
for (const { scheme, generated_by, secrets, tolerance_secs, cases, official } of schemes) {
  for (const c of cases) {
    const accepted = await official(c);
    // A case agrees with the provider's check, or its note says why not.
    if ((accepted === (c.expect === "ok")) === !!c.note) {
      const verdict = accepted ? "accepts" : "rejects";
      throw new Error(`${scheme}/${c.name}: the official check ${verdict} it, the vector expects ${c.expect}, note: ${c.note}`);
    }
  }
  const file = {
    scheme,
    generated_by,
    secrets,
    now: NOW,
    ...(tolerance_secs === undefined ? {} : { tolerance_secs }),
    cases,
  };
  const path = join(outDir, `${scheme}.json`);
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`);
  console.log(`${path}: ${cases.length} cases`);
}
