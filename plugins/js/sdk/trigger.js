//! Verdicts and trigger helpers of the Weir JS SDK: pure JavaScript, no host
//! import (index.js adds the host's `log` and `config`), so node can test them.
//
// The shapes are componentize-qjs's mapping of the WIT types
// (`wit/plugin.wit`): a variant is `{tag, val}`, a record a camelCase
// object, an `option` is the value or `undefined`/`null`, `list<u8>` a
// Uint8Array, `u64` a Number (exact below 2^53: milliseconds are).

import { toBytes, utf8Decode } from './crypto.js';

/** Version of the WIT package this SDK targets. */
export const WIT_PACKAGE = 'weir:plugin@0.2.0';

function asciiLower(name) {
  return String(name).replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/**
 * An accept verdict being built: returned from `handle` as it is (it is a
 * `{tag: 'accept', val}` verdict). Every method returns `this`.
 */
export class Accepted {
  constructor() {
    this.tag = 'accept';
    this.val = { body: undefined, setHeaders: [], removeHeaders: [], idempotencyKey: undefined, route: undefined };
  }

  /** Replace the stored body (a Uint8Array, or a string: its UTF-8). */
  withBody(body) {
    this.val.body = toBytes(body);
    return this;
  }

  /** Set a header on the stored trigger (replacing any of that name); the name is lower-cased. */
  setHeader(name, value) {
    this.val.setHeaders.push({ name: asciiLower(name), value: String(value) });
    return this;
  }

  /** Remove a header from the stored trigger. */
  removeHeader(name) {
    this.val.removeHeaders.push(String(name));
    return this;
  }

  /** Use `key` for deduplication and delivery instead of the sender's `Idempotency-Key`. */
  idempotencyKey(key) {
    this.val.idempotencyKey = String(key);
    return this;
  }

  /** Attach a route name for the forwarder. */
  route(name) {
    this.val.route = String(name);
    return this;
  }

  /** Alias of `idempotencyKey` (the Rust SDK's name). */
  withIdempotencyKey(key) {
    return this.idempotencyKey(key);
  }

  /** Alias of `route` (the Rust SDK's name). */
  withRoute(name) {
    return this.route(name);
  }
}

/** Accept the trigger; chain `withBody`, `setHeader`, ... to transform it. */
export function accept() {
  return new Accepted();
}

/** Accept the trigger exactly as received (no body copy crosses back). */
export function acceptUnchanged() {
  return new Accepted();
}

/** Accept the trigger with a new body (a Uint8Array, or a string: its UTF-8). */
export function acceptWithBody(body) {
  return new Accepted().withBody(body);
}

/**
 * Refuse the trigger; the sender gets `status` and `reason`. `status` must
 * be in 400..=499: Weir treats any other status as a plugin fault.
 */
export function reject(status, reason) {
  return { tag: 'reject', val: { status, reason: String(reason) } };
}

/** Acknowledge the sender (202) but neither store nor forward. */
export function drop() {
  return { tag: 'drop' };
}

/**
 * The value of the first header called `name` (ASCII case-insensitive), or
 * `undefined`. `headersOrTrigger`: a trigger or its `headers` list.
 */
export function findHeader(headersOrTrigger, name) {
  const headers = Array.isArray(headersOrTrigger) ? headersOrTrigger : headersOrTrigger.headers;
  const wanted = asciiLower(name);
  for (const h of headers) {
    if (h.name === wanted || asciiLower(h.name) === wanted) return h.value;
  }
  return undefined;
}

/** Every value of the headers called `name` (case-insensitive), in arrival order. */
export function headerValues(headersOrTrigger, name) {
  const headers = Array.isArray(headersOrTrigger) ? headersOrTrigger : headersOrTrigger.headers;
  const wanted = asciiLower(name);
  return headers.filter((h) => asciiLower(h.name) === wanted).map((h) => h.value);
}

/** The body as a string, or `null` when it is not valid UTF-8. */
export function bodyText(trigger) {
  return utf8Decode(trigger.body);
}

/**
 * The body parsed as JSON. Throws a SyntaxError when it is not valid UTF-8
 * or not valid JSON.
 */
export function bodyJson(trigger) {
  const text = bodyText(trigger);
  if (text === null) throw new SyntaxError('invalid UTF-8');
  return JSON.parse(text);
}

/** Arrival time in whole seconds since the Unix epoch. */
export function receivedAtSecs(trigger) {
  return Math.floor(Number(trigger.receivedAtMs) / 1000);
}

/**
 * Split a comma-separated list, trimming whitespace around each item and
 * skipping empty items: `" a, b,,c "` gives `['a', 'b', 'c']`.
 */
export function splitList(list) {
  return String(list)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
