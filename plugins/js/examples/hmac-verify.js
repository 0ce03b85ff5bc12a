//! `hmac-verify` in JavaScript: accepts only triggers whose webhook
//! signature is valid, under the scheme the tenant's config names. The twin
//! of the Rust example (plugins/hmac-verify), verdict for verdict.
//
// Tenant config (`[tenants.config]`):
//   scheme           github (default), stripe, standard-webhooks, shopify or slack
//   secret           required: the signing secret, as the provider shows it
//   previous_secret  optional: also accepted during a rotation (`secret_previous`, the older name, still works)
//   tolerance_secs   timestamped schemes (stripe, standard-webhooks, slack): max distance
//                    between the signed timestamp and the arrival time, either direction;
//                    default 300, 0 disables the check
//
// A missing, malformed, stale or wrong signature is the sender's problem:
// 401 with a reason saying which. An unknown `scheme` is refused the same
// way (401, the reason names the known schemes): quarantining every
// unverifiable request would let anyone fill the tenant's store. A missing
// `secret`, a Standard Webhooks secret that is not base64 or a non-numeric
// `tolerance_secs` is a plugin fault (logged, then thrown). Valid triggers
// are accepted unchanged (no body copy).

import {
  DEFAULT_TOLERANCE_SECS,
  SignatureError,
  acceptUnchanged,
  config,
  error,
  fault,
  info,
  isTimestamped,
  parseScheme,
  reject,
  schemeKey,
  verifyTriggerSignature,
  warn,
} from '../sdk/index.js';

/** The status of every refusal: the request could not be authenticated. */
const UNAUTHORIZED = 401;

const U64_MAX = 18446744073709551615n;

/** A config value, `undefined` when unset or blank. */
function setting(key) {
  const value = config(key);
  return value === undefined || value.trim() === '' ? undefined : value;
}

function toleranceSecs() {
  const value = setting('tolerance_secs');
  if (value === undefined) return DEFAULT_TOLERANCE_SECS;
  // What Rust's u64::from_str takes: digits, an optional leading '+'.
  const text = value.trim();
  if (!/^\+?[0-9]+$/.test(text) || BigInt(text) > U64_MAX) {
    fault('hmac-verify: config `tolerance_secs` must be a whole number of seconds');
  }
  return Number(text);
}

/** The HMAC key of config `key`; `undefined` when unset, a fault when the scheme cannot use it. */
function key(scheme, key) {
  const secret = setting(key);
  if (secret === undefined) return undefined;
  try {
    return schemeKey(scheme, secret);
  } catch (e) {
    fault(`hmac-verify: config \`${key}\` is not a ${scheme} secret: ${e.message}`);
  }
}

/** The index of the matching key, or the SignatureError. */
function check(scheme, k, trigger) {
  // Only the timestamped schemes read the tolerance (one host call less).
  const tolerance = isTimestamped(scheme) ? toleranceSecs() : 0;
  try {
    return verifyTriggerSignature(scheme, [k], trigger, tolerance);
  } catch (e) {
    if (e instanceof SignatureError) return e;
    throw e;
  }
}

export function handle(trigger) {
  let scheme;
  try {
    scheme = parseScheme(setting('scheme') ?? 'github');
  } catch (unknown) {
    const reason = `hmac-verify: cannot verify the request: ${unknown.message}`;
    error(reason);
    return reject(UNAUTHORIZED, reason);
  }
  const current = key(scheme, 'secret') ?? fault('hmac-verify: tenant config key `secret` is not set');
  let result = check(scheme, current, trigger);
  // The previous secret is read only when the current one did not match:
  // a rotation costs the hot path nothing.
  if (result instanceof SignatureError && result.kind === 'mismatch') {
    const previous = key(scheme, 'previous_secret') ?? key(scheme, 'secret_previous');
    if (previous !== undefined) {
      result = check(scheme, previous, trigger);
      if (!(result instanceof SignatureError)) {
        info('hmac-verify: signature matched `previous_secret`; finish the rotation at the sender');
      }
    }
  }
  if (!(result instanceof SignatureError)) return acceptUnchanged();
  warn(`hmac-verify: rejected (${scheme}, ${result.kind}): ${result.message}`);
  return reject(UNAUTHORIZED, result.message);
}
