// The shared signature vectors (tests/vectors/signatures/*.json, made by the
// providers' official libraries; format in tests/vectors/README.md) through
// the JS SDK's signature.js: every case gives its expected outcome at the
// vectors' `now`, future timestamps included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DEFAULT_TOLERANCE_SECS, SCHEMES, SignatureError, isTimestamped, parseScheme, schemeKey, verify } from '../sdk/signature.js';
import { utf8Encode } from '../sdk/crypto.js';

const DIR = new URL('../../../tests/vectors/signatures/', import.meta.url);

export function loadVectors() {
  return SCHEMES.map((name) => {
    const file = JSON.parse(readFileSync(new URL(`${name}.json`, DIR), 'utf8'));
    assert.equal(parseScheme(file.scheme), name, `${name}.json names its scheme`);
    return {
      scheme: name,
      secrets: file.secrets,
      keys: file.secrets.map((s) => schemeKey(name, s)),
      now: file.now,
      toleranceSecs: file.tolerance_secs ?? DEFAULT_TOLERANCE_SECS,
      cases: file.cases.map((c) => ({
        ...c,
        headerList: Object.entries(c.headers).map(([name, value]) => ({ name, value })),
        bytes: utf8Encode(c.body),
      })),
    };
  });
}

function outcome(file, keys, c, tolerance = file.toleranceSecs) {
  try {
    return { ok: verify(file.scheme, keys, c.headerList, c.bytes, file.now, tolerance) };
  } catch (e) {
    if (!(e instanceof SignatureError)) throw e;
    return { err: e.kind, message: e.message };
  }
}

const REASON = {
  missing_header: 'missing ',
  malformed_header: 'malformed ',
  timestamp_out_of_tolerance: 'outside the tolerance',
  mismatch: 'signature mismatch',
};

test('every vector gets its expected outcome, with the reason the e2e tests look for', () => {
  const failures = [];
  let future = 0;
  for (const file of loadVectors()) {
    for (const c of file.cases) {
      if (c.timestamp !== undefined && c.timestamp > file.now) future++;
      const got = outcome(file, file.keys, c);
      const want = c.expect === 'ok' ? { ok: c.matched_secret } : { err: c.expect };
      if (want.ok !== undefined ? got.ok !== want.ok : got.err !== want.err || !got.message.includes(REASON[want.err])) {
        failures.push(`${file.scheme}/${c.name}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
      }
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(future > 0, 'the vectors hold cases signed in the future of now');
});

test('the vectors cover every scheme, rotation and error', () => {
  for (const file of loadVectors()) {
    const kinds = new Set(file.cases.map((c) => (c.expect === 'ok' ? `ok${c.matched_secret}` : c.expect)));
    for (const k of ['ok0', 'ok1', 'mismatch', 'missing_header', 'malformed_header']) assert.ok(kinds.has(k), `${file.scheme}: ${k}`);
    assert.equal(kinds.has('timestamp_out_of_tolerance'), isTimestamped(file.scheme), file.scheme);
  }
});

test('rotated vectors need the previous secret', () => {
  for (const file of loadVectors()) {
    for (const c of file.cases.filter((c) => c.expect === 'ok' && c.matched_secret === 1)) {
      assert.equal(outcome(file, file.keys.slice(0, 1), c).err, 'mismatch', `${file.scheme}/${c.name}`);
    }
  }
});

test('a zero tolerance accepts genuine stale vectors', () => {
  for (const file of loadVectors().filter((f) => isTimestamped(f.scheme))) {
    for (const c of file.cases.filter((c) => c.expect === 'timestamp_out_of_tolerance')) {
      assert.deepEqual(outcome(file, file.keys, c, 0), { ok: 0 }, `${file.scheme}/${c.name}`);
    }
  }
});
