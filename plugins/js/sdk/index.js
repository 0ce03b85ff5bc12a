//! The Weir plugin SDK for JavaScript: everything of crypto.js, trigger.js,
//! json.js and signature.js, plus the host imports (`log`, `config`) and
//! `fault`. A plugin exports `handle(trigger)` returning a verdict:
//!
//!     import { acceptUnchanged, findHeader, reject } from '../sdk/index.js';
//!     export function handle(trigger) {
//!       if (!findHeader(trigger, 'x-event')) return reject(400, 'missing X-Event header');
//!       return acceptUnchanged();
//!     }
//
// Only this module imports the host interface ('weir:plugin/host@0.2.0',
// which exists inside the component only); the others are plain modules
// that node can load and test.

import { config as hostConfig, log as hostLog } from 'weir:plugin/host@0.2.0';
import { splitList } from './trigger.js';

export * from './crypto.js';
export * from './trigger.js';
export * from './json.js';
export * as crypto from './crypto.js';
export * as signature from './signature.js';
export {
  DEFAULT_TOLERANCE_SECS,
  InvalidSecret,
  SCHEMES,
  SignatureError,
  UnknownScheme,
  isTimestamped,
  parseScheme,
  schemeKey,
  verify as verifySignature,
  verifyTrigger as verifyTriggerSignature,
} from './signature.js';

/**
 * Log `message` at `level` (`trace`, `debug`, `info`, `warn`, `error`),
 * attributed to the tenant. The host truncates long messages and caps the
 * number of calls per trigger. Also `log.info(message)` and so on.
 */
export function log(level, message) {
  hostLog(level, String(message));
}

/** `log` at `trace`. */
export function trace(message) {
  hostLog('trace', String(message));
}
/** `log` at `debug`. */
export function debug(message) {
  hostLog('debug', String(message));
}
/** `log` at `info`. */
export function info(message) {
  hostLog('info', String(message));
}
/** `log` at `warn`. */
export function warn(message) {
  hostLog('warn', String(message));
}
/** `log` at `error`. */
export function error(message) {
  hostLog('error', String(message));
}
log.trace = trace;
log.debug = debug;
log.info = info;
log.warn = warn;
log.error = error;

/** `key` of the tenant's `[tenants.config]` table, or `undefined` when not set. */
export function config(key) {
  const value = hostConfig(String(key));
  return value === null || value === undefined ? undefined : value;
}

/** `config(key)`, or `fallback` when the key is not set. */
export function configOr(key, fallback) {
  const value = config(key);
  return value === undefined ? fallback : value;
}

/** `config(key)` read as a comma-separated list (see `splitList`); `[]` when not set. */
export function configList(key) {
  const value = config(key);
  return value === undefined ? [] : splitList(value);
}

/**
 * Fail the trigger as a plugin fault: log `message` at `error` (so the
 * tenant's log says why), then throw. An exception that leaves `handle`
 * traps the instance, and Weir quarantines the trigger (or answers 503
 * with `on_plugin_error = "reject"`) instead of blaming the sender with a
 * 4xx. Use it for operator mistakes such as a missing secret.
 * @returns {never}
 */
export function fault(message) {
  error(message);
  throw new Error(String(message));
}
