//! `json-transform` in TypeScript: the typed twin of examples/json-transform.js
//! (and of the Rust plugins/json-transform), checked by tsc against the SDK's
//! typings (sdk/index.d.ts) and the WIT types (types/, from `jco guest-types`).

import type { Trigger as WitTrigger, Verdict as WitVerdict } from 'weir:plugin/types@0.2.0';
import { accept, bodyText, config, reject, splitList, stringifySorted } from '../../sdk/index.js';
import type { Trigger } from '../../sdk/index.js';

type JsonObject = { [key: string]: unknown };

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// The export the world `trigger-plugin` asks for. Its parameter is the
// SDK's Trigger (the WIT record as componentize-qjs delivers it: u64 as a
// Number); its result must be a WIT verdict, which tsc checks.
export function handle(trigger: Trigger): WitVerdict {
  const text = bodyText(trigger);
  if (text === null) return reject(400, 'body is not valid JSON: invalid UTF-8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return reject(400, `body is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(parsed)) return reject(400, 'body must be a JSON object');

  const drop = config('drop');
  if (drop !== undefined) {
    for (const field of splitList(drop)) delete parsed[field];
  }
  parsed._weir = { tenant: trigger.tenant, source: trigger.source };

  return accept().withBody(stringifySorted(parsed)).setHeader('content-type', 'application/json');
}

// Compile-time check that `handle` fits the world's export up to the one
// known difference (u64 as a Number): removing `receivedAtMs` from both
// sides, the WIT's signature must accept ours.
type Same<T> = Omit<T, 'receivedAtMs'>;
const _fits: (t: Same<WitTrigger>) => WitVerdict = (t) => handle({ ...t, receivedAtMs: 0 });
void _fits;
