//! Webhook signature schemes from the field: GitHub, Stripe, Standard
//! Webhooks (Svix and the many providers that follow it), Shopify and Slack,
//! the JavaScript twin of the Rust SDK's `weir_plugin_sdk::signature`.
//
// Every verifier takes a LIST of keys so that a secret can be rotated
// without downtime (current first, then the previous one): the request is
// genuine if any key verifies it, and the verifier returns the index of
// that key. Tags are compared in constant time. Time comes from the caller
// (the trigger's arrival time), never from a clock, so a verdict can be
// reproduced at replay and in tests. Errors are `SignatureError`s whose
// `kind` and message are the Rust SDK's, word for word (the end-to-end
// tests and the shared vectors hold every SDK to them).
//
// Pure JavaScript, no host import: node runs it in the unit tests.

import {
  HmacSha256,
  TAG_LEN,
  base64Decode,
  base64Encode,
  constantTimeEqual,
  hexDecode,
  hexEncode,
  toBytes,
} from './crypto.js';
import { findHeader } from './trigger.js';

/**
 * Default distance allowed between a signed timestamp and the arrival
 * time, in either direction: five minutes, as Stripe, Slack and Standard
 * Webhooks recommend.
 */
export const DEFAULT_TOLERANCE_SECS = 300;

/** Every scheme's config name, in the order of the docs. */
export const SCHEMES = Object.freeze(['github', 'stripe', 'standard-webhooks', 'shopify', 'slack']);

const U64_MAX = 18446744073709551615n;
const I64_MAX = 9223372036854775807n;
const I64_MIN = -9223372036854775808n;

/**
 * Why a signature check failed. `message` is a reason fit for the sender
 * (never a secret nor an expected signature); `kind` names the case:
 * `missing_header`, `malformed_header`, `timestamp_out_of_tolerance`,
 * `mismatch` (the names of the shared test vectors).
 */
export class SignatureError extends Error {
  constructor(kind, message, details) {
    super(message);
    this.name = 'SignatureError';
    this.kind = kind;
    Object.assign(this, details);
  }

  /** A header the scheme needs is absent or blank (its display name). */
  static missingHeader(header) {
    return new SignatureError('missing_header', `missing ${header} header`, { header });
  }

  /** A header does not have the scheme's shape. */
  static malformedHeader(header, expected) {
    return new SignatureError('malformed_header', `malformed ${header} header (expected ${expected})`, {
      header,
      expected,
    });
  }

  /**
   * A genuine signature whose timestamp is too far from the arrival time.
   * `age` (a BigInt): arrival minus signed time, negative when signed in
   * the future.
   */
  static timestampOutOfTolerance(age, toleranceSecs) {
    const clamped = age > I64_MAX ? I64_MAX : age < I64_MIN ? I64_MIN : age;
    const described = clamped >= 0n ? `${clamped}s before` : `${-clamped}s after`;
    return new SignatureError(
      'timestamp_out_of_tolerance',
      `signature timestamp is ${described} the arrival time, outside the tolerance of ${toleranceSecs}s`,
      { ageSecs: Number(clamped), toleranceSecs },
    );
  }

  /** No signature of the request matches it under any of the keys. */
  static mismatch() {
    return new SignatureError(
      'mismatch',
      'signature mismatch: no signature matched the request under the configured secrets',
    );
  }
}

/** A scheme name that is not one of `SCHEMES`. */
export class UnknownScheme extends Error {
  constructor(name) {
    super(
      `unknown signature scheme ${JSON.stringify(name)} (expected github, stripe, standard-webhooks, shopify or slack)`,
    );
    this.name = 'UnknownScheme';
    this.scheme = name;
  }
}

/** A configured secret that the scheme cannot use (`kind`: `empty`, `not_base64`). */
export class InvalidSecret extends Error {
  constructor(kind) {
    super(
      kind === 'empty' ? 'the secret is empty' : 'a Standard Webhooks secret must be whsec_ followed by base64',
    );
    this.name = 'InvalidSecret';
    this.kind = kind;
  }
}

/** ASCII case-insensitive equality (header and scheme names). */
function eqIgnoreAsciiCase(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x >= 65 && x <= 90) x += 32;
    if (y >= 65 && y <= 90) y += 32;
    if (x !== y) return false;
  }
  return true;
}

/**
 * The scheme of a config name (surrounding whitespace and ASCII case
 * ignored): one of `SCHEMES`. Throws `UnknownScheme` (its message names
 * the known schemes) otherwise.
 * @param {string} name
 * @returns {'github' | 'stripe' | 'standard-webhooks' | 'shopify' | 'slack'}
 */
export function parseScheme(name) {
  const trimmed = String(name).trim();
  const scheme = SCHEMES.find((s) => eqIgnoreAsciiCase(s, trimmed));
  if (scheme === undefined) throw new UnknownScheme(name);
  return scheme;
}

/** Whether the scheme signs a timestamp (and so checks a tolerance). */
export function isTimestamped(scheme) {
  const s = parseScheme(scheme);
  return s === 'stripe' || s === 'standard-webhooks' || s === 'slack';
}

/**
 * The HMAC key of a secret as the provider hands it out: the bytes of a
 * Standard Webhooks `whsec_<base64>` secret, the UTF-8 bytes of any other
 * (Stripe's `whsec_…` secrets included: Stripe uses them as they are).
 * Throws `InvalidSecret`.
 * @returns {Uint8Array}
 */
export function schemeKey(scheme, secret) {
  const key = parseScheme(scheme) === 'standard-webhooks' ? standardWebhooks.decodeSecret(secret) : toBytes(secret);
  if (key.length === 0) throw new InvalidSecret('empty');
  return key;
}

/**
 * Verify a request's `headers` (`{name, value}` list) and raw `body`
 * against `keys` (see `schemeKey`) at `nowSecs`. `toleranceSecs` applies to
 * the timestamped schemes; 0 disables the timestamp check. Returns the
 * index of the key that matched; throws `SignatureError`.
 */
export function verify(scheme, keys, headers, body, nowSecs, toleranceSecs = DEFAULT_TOLERANCE_SECS) {
  switch (parseScheme(scheme)) {
    case 'github':
      return github.verify(keys, headers, body);
    case 'stripe':
      return stripe.verify(keys, headers, body, nowSecs, toleranceSecs);
    case 'standard-webhooks':
      return standardWebhooks.verify(keys, headers, body, nowSecs, toleranceSecs);
    case 'shopify':
      return shopify.verify(keys, headers, body);
    default:
      return slack.verify(keys, headers, body, nowSecs, toleranceSecs);
  }
}

/** `verify` on a trigger, at its arrival time. */
export function verifyTrigger(scheme, keys, trigger, toleranceSecs = DEFAULT_TOLERANCE_SECS) {
  return verify(scheme, keys, trigger.headers, trigger.body, Math.floor(Number(trigger.receivedAtMs) / 1000), toleranceSecs);
}

// ---------------------------------------------------------------------------
// The pieces every scheme shares, each written once.
// ---------------------------------------------------------------------------

/** The trimmed value of header `name`; `missing_header` when absent or blank. */
function required(headers, name, display) {
  const value = findHeader(headers, name);
  const trimmed = value === undefined ? '' : value.trim();
  if (trimmed === '') throw SignatureError.missingHeader(display);
  return trimmed;
}

/** Unix seconds written as plain decimal digits, as a BigInt (u64); `null` otherwise. */
export function parseUnixSecs(value) {
  if (!/^[0-9]+$/.test(value)) return null;
  const n = BigInt(value);
  return n > U64_MAX ? null : n;
}

/** The index of the first key whose HMAC of the message verifies one of `tags`. */
function firstMatch(keys, tags, message) {
  for (let i = 0; i < keys.length; i++) {
    const mac = new HmacSha256(keys[i]);
    message(mac);
    const tag = mac.digest();
    let ok = false;
    for (const t of tags) ok = constantTimeEqual(tag, t) || ok;
    if (ok) return i;
  }
  throw SignatureError.mismatch();
}

/** Throws unless `signed` (BigInt) is within `toleranceSecs` of `nowSecs`; 0 disables. */
function checkTolerance(signed, nowSecs, toleranceSecs) {
  const tolerance = BigInt(Math.floor(Number(toleranceSecs)));
  const age = BigInt(Math.floor(Number(nowSecs))) - signed;
  if (tolerance > 0n && (age < 0n ? -age : age) > tolerance) {
    throw SignatureError.timestampOutOfTolerance(age, toleranceSecs);
  }
}

/** `[before, after]` split at the first `sep`, or `null`. */
function splitOnce(text, sep) {
  const i = text.indexOf(sep);
  return i < 0 ? null : [text.slice(0, i), text.slice(i + sep.length)];
}

// ---------------------------------------------------------------------------
// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
// ---------------------------------------------------------------------------

export const github = Object.freeze({
  HEADER: 'x-hub-signature-256',
  DISPLAY: 'X-Hub-Signature-256',
  SHAPE: 'sha256=<64 hex digits>',

  /** The 32-byte tag of a header value (prefix and hex in either case). */
  parseHeader(value) {
    const v = value.trim();
    const tag = eqIgnoreAsciiCase(v.slice(0, 7), 'sha256=') ? hexDecode(v.slice(7), TAG_LEN) : null;
    if (tag === null) throw SignatureError.malformedHeader(github.DISPLAY, github.SHAPE);
    return tag;
  },

  verify(keys, headers, body) {
    const tag = github.parseHeader(required(headers, github.HEADER, github.DISPLAY));
    return firstMatch(keys, [tag], (mac) => mac.update(body));
  },

  /** The header value GitHub would send (for tests and tooling). */
  sign(key, body) {
    return `sha256=${hexEncode(new HmacSha256(key).update(body).digest())}`;
  },
});

// ---------------------------------------------------------------------------
// Stripe: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`, each v1
// the HMAC of `"{t}.{raw body}"` under the `whsec_…` secret used as it is.
// ---------------------------------------------------------------------------

export const stripe = Object.freeze({
  HEADER: 'stripe-signature',
  DISPLAY: 'Stripe-Signature',
  SHAPE: 't=<unix seconds>,v1=<64 hex digits>',

  /** `{timestamp (BigInt), v1 (tags)}`; `t` exactly once, at least one well-formed `v1`. */
  parseHeader(value) {
    const malformed = () => SignatureError.malformedHeader(stripe.DISPLAY, stripe.SHAPE);
    let timestamp = null;
    const v1 = [];
    for (const raw of value.split(',')) {
      const item = raw.trim();
      if (item === '') continue;
      const kv = splitOnce(item, '=');
      if (kv === null) throw malformed();
      const key = kv[0].trim();
      if (key === 't') {
        if (timestamp !== null) throw malformed();
        timestamp = parseUnixSecs(kv[1].trim());
        if (timestamp === null) throw malformed();
      } else if (key === 'v1') {
        const tag = hexDecode(kv[1].trim(), TAG_LEN);
        if (tag !== null) v1.push(tag);
      }
    }
    if (timestamp === null || v1.length === 0) throw malformed();
    return { timestamp, v1 };
  },

  verify(keys, headers, body, nowSecs, toleranceSecs = DEFAULT_TOLERANCE_SECS) {
    const sig = stripe.parseHeader(required(headers, stripe.HEADER, stripe.DISPLAY));
    // Stripe's libraries sign the decimal of the parsed `t`.
    const t = `${sig.timestamp}.`;
    const matched = firstMatch(keys, sig.v1, (mac) => mac.update(t).update(body));
    checkTolerance(sig.timestamp, nowSecs, toleranceSecs);
    return matched;
  },

  sign(key, timestamp, body) {
    const tag = new HmacSha256(key).update(`${timestamp}.`).update(body).digest();
    return `t=${timestamp},v1=${hexEncode(tag)}`;
  },
});

// ---------------------------------------------------------------------------
// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`
// (space-separated `v1,<base64>`), the HMAC of `"{id}.{timestamp}.{body}"`
// under the bytes of a `whsec_<base64>` secret; Svix's `svix-*` names when
// the request carries none of the `webhook-*` ones.
// ---------------------------------------------------------------------------

const WEBHOOK_NAMES = {
  id: ['webhook-id', 'Webhook-Id'],
  timestamp: ['webhook-timestamp', 'Webhook-Timestamp'],
  signature: ['webhook-signature', 'Webhook-Signature'],
};
const SVIX_NAMES = {
  id: ['svix-id', 'Svix-Id'],
  timestamp: ['svix-timestamp', 'Svix-Timestamp'],
  signature: ['svix-signature', 'Svix-Signature'],
};

function anyIn(names, headers) {
  return [names.id, names.timestamp, names.signature].some(([n]) => findHeader(headers, n) !== undefined);
}

function parseSignaturesOf(value, display) {
  const tags = [];
  for (const item of value.split(' ')) {
    const vs = splitOnce(item, ',');
    if (vs === null || vs[0] !== 'v1') continue;
    const tag = base64Decode(vs[1], TAG_LEN);
    if (tag !== null) tags.push(tag);
  }
  if (tags.length === 0) throw SignatureError.malformedHeader(display, standardWebhooks.SIGNATURE_SHAPE);
  return tags;
}

export const standardWebhooks = Object.freeze({
  ID_HEADER: 'webhook-id',
  TIMESTAMP_HEADER: 'webhook-timestamp',
  SIGNATURE_HEADER: 'webhook-signature',
  SECRET_PREFIX: 'whsec_',
  SIGNATURE_SHAPE: 'space-separated v1,<base64 of 32 bytes>',
  TIMESTAMP_SHAPE: '<unix seconds>',

  /** The key of a secret: the base64 after the optional `whsec_` prefix. Throws `InvalidSecret`. */
  decodeSecret(secret) {
    let encoded = String(secret).trim();
    if (encoded.startsWith('whsec_')) encoded = encoded.slice(6);
    const key = base64Decode(encoded);
    if (key === null) throw new InvalidSecret('not_base64');
    if (key.length === 0) throw new InvalidSecret('empty');
    return key;
  },

  /** Every well-formed `v1` signature of a `webhook-signature` value (at least one). */
  parseSignatures(value) {
    return parseSignaturesOf(value, WEBHOOK_NAMES.signature[1]);
  },

  verify(keys, headers, body, nowSecs, toleranceSecs = DEFAULT_TOLERANCE_SECS) {
    const names = !anyIn(WEBHOOK_NAMES, headers) && anyIn(SVIX_NAMES, headers) ? SVIX_NAMES : WEBHOOK_NAMES;
    const id = required(headers, ...names.id);
    const timestampText = required(headers, ...names.timestamp);
    const signatures = required(headers, ...names.signature);
    const timestamp = parseUnixSecs(timestampText);
    if (timestamp === null) {
      throw SignatureError.malformedHeader(names.timestamp[1], standardWebhooks.TIMESTAMP_SHAPE);
    }
    const tags = parseSignaturesOf(signatures, names.signature[1]);
    // The reference libraries sign the decimal of the parsed timestamp.
    const prefix = `${id}.${timestamp}.`;
    const matched = firstMatch(keys, tags, (mac) => mac.update(prefix).update(body));
    checkTolerance(timestamp, nowSecs, toleranceSecs);
    return matched;
  },

  sign(key, id, timestamp, body) {
    const tag = new HmacSha256(key).update(`${id}.${timestamp}.`).update(body).digest();
    return `v1,${base64Encode(tag)}`;
  },
});

// ---------------------------------------------------------------------------
// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>`.
// ---------------------------------------------------------------------------

export const shopify = Object.freeze({
  HEADER: 'x-shopify-hmac-sha256',
  DISPLAY: 'X-Shopify-Hmac-Sha256',
  SHAPE: 'base64 of a 32-byte HMAC-SHA256',

  verify(keys, headers, body) {
    const tag = base64Decode(required(headers, shopify.HEADER, shopify.DISPLAY), TAG_LEN);
    if (tag === null) throw SignatureError.malformedHeader(shopify.DISPLAY, shopify.SHAPE);
    return firstMatch(keys, [tag], (mac) => mac.update(body));
  },

  sign(key, body) {
    return base64Encode(new HmacSha256(key).update(body).digest());
  },
});

// ---------------------------------------------------------------------------
// Slack: `X-Slack-Signature: v0=<hex>`, the HMAC of
// `"v0:{X-Slack-Request-Timestamp}:{raw body}"` under the signing secret.
// ---------------------------------------------------------------------------

export const slack = Object.freeze({
  SIGNATURE_HEADER: 'x-slack-signature',
  TIMESTAMP_HEADER: 'x-slack-request-timestamp',
  SIGNATURE_DISPLAY: 'X-Slack-Signature',
  TIMESTAMP_DISPLAY: 'X-Slack-Request-Timestamp',
  SIGNATURE_SHAPE: 'v0=<64 hex digits>',
  TIMESTAMP_SHAPE: '<unix seconds>',

  verify(keys, headers, body, nowSecs, toleranceSecs = DEFAULT_TOLERANCE_SECS) {
    const signature = required(headers, slack.SIGNATURE_HEADER, slack.SIGNATURE_DISPLAY);
    const timestampText = required(headers, slack.TIMESTAMP_HEADER, slack.TIMESTAMP_DISPLAY);
    const timestamp = parseUnixSecs(timestampText);
    if (timestamp === null) throw SignatureError.malformedHeader(slack.TIMESTAMP_DISPLAY, slack.TIMESTAMP_SHAPE);
    const tag = signature.startsWith('v0=') ? hexDecode(signature.slice(3), TAG_LEN) : null;
    if (tag === null) throw SignatureError.malformedHeader(slack.SIGNATURE_DISPLAY, slack.SIGNATURE_SHAPE);
    // Slack signs the header's text as sent.
    const prefix = `v0:${timestampText}:`;
    const matched = firstMatch(keys, [tag], (mac) => mac.update(prefix).update(body));
    checkTolerance(timestamp, nowSecs, toleranceSecs);
    return matched;
  },

  sign(key, timestamp, body) {
    return `v0=${hexEncode(new HmacSha256(key).update(`v0:${timestamp}:`).update(body).digest())}`;
  },
});
