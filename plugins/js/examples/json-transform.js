//! `json-transform` in JavaScript: normalises JSON object bodies, the twin
//! of the Rust example (plugins/json-transform).
//
// * A body that is not a JSON object (invalid JSON, or an array, string,
//   number...) is rejected with 400.
// * The top-level fields named in config key `drop` (comma-separated,
//   whitespace around names trimmed; optional) are removed.
// * `"_weir": {"tenant": <tenant>, "source": <source>}` is added (replacing
//   any `_weir` the sender put there).
// * The stored trigger gets `content-type: application/json`.
//
// The output is compact JSON with object keys sorted at every level, as
// serde_json writes it. Numbers are JavaScript doubles: integers beyond
// 2^53 lose precision and `1.0` is written `1` (see the README).

import { accept, bodyText, config, reject, splitList, stringifySorted } from '../sdk/index.js';

export function handle(trigger) {
  const text = bodyText(trigger);
  if (text === null) return reject(400, 'body is not valid JSON: invalid UTF-8');
  let object;
  try {
    object = JSON.parse(text);
  } catch (e) {
    return reject(400, `body is not valid JSON: ${e.message}`);
  }
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    return reject(400, 'body must be a JSON object');
  }

  const drop = config('drop');
  if (drop !== undefined) {
    for (const field of splitList(drop)) delete object[field];
  }

  object._weir = { tenant: trigger.tenant, source: trigger.source };

  return accept().withBody(stringifySorted(object)).setHeader('content-type', 'application/json');
}
