//! `passthrough` in JavaScript: accepts every trigger unchanged (the
//! benchmark's floor: instantiation, one call, no work).

import { acceptUnchanged } from '../sdk/index.js';

export function handle(_trigger) {
  return acceptUnchanged();
}
