// Verdict builders, trigger helpers, sorted JSON, scheme names and the
// generated WIT types (the host-importing index.js is exercised by the
// components, tools/check-components.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as t from '../sdk/trigger.js';
import { compareCodePoints, stringifySorted } from '../sdk/json.js';
import { InvalidSecret, SignatureError, UnknownScheme, parseScheme, schemeKey } from '../sdk/signature.js';
import { utf8Encode } from '../sdk/crypto.js';

const trigger = {
  tenant: 'acme',
  source: 'github',
  method: 'POST',
  path: '/ingest/acme/github',
  query: '',
  headers: [
    { name: 'content-type', value: 'application/json' },
    { name: 'x-many', value: '1' },
    { name: 'x-many', value: '2' },
  ],
  body: utf8Encode('{}'),
  receivedAtMs: 1_700_000_000_123,
  phase: 'ingest',
};

test('header lookup is case-insensitive; body and time helpers', () => {
  assert.equal(t.findHeader(trigger, 'Content-Type'), 'application/json');
  assert.equal(t.findHeader(trigger.headers, 'CONTENT-TYPE'), 'application/json');
  assert.equal(t.findHeader(trigger, 'x-many'), '1');
  assert.deepEqual(t.headerValues(trigger, 'X-Many'), ['1', '2']);
  assert.equal(t.findHeader(trigger, 'missing'), undefined);
  assert.equal(t.receivedAtSecs(trigger), 1_700_000_000);
  assert.equal(t.receivedAtSecs({ receivedAtMs: 1_700_000_000_999n }), 1_700_000_000);
  assert.equal(t.bodyText(trigger), '{}');
  assert.deepEqual(t.bodyJson(trigger), {});
  assert.equal(t.bodyText({ body: new Uint8Array([0xff]) }), null);
  assert.throws(() => t.bodyJson({ body: new Uint8Array([0xff]) }), SyntaxError);
  assert.deepEqual(t.splitList(' a, b,,c '), ['a', 'b', 'c']);
  assert.deepEqual(t.splitList(''), []);
});

test('verdicts have the WIT shapes componentize-qjs lowers', () => {
  assert.deepEqual({ ...t.acceptUnchanged() }, {
    tag: 'accept',
    val: { body: undefined, setHeaders: [], removeHeaders: [], idempotencyKey: undefined, route: undefined },
  });
  const a = t.accept().withBody('é').setHeader('X-Kind', 'push').removeHeader('x-secret').idempotencyKey('k').route('r');
  assert.deepEqual([...a.val.body], [0xc3, 0xa9]);
  assert.deepEqual(a.val.setHeaders, [{ name: 'x-kind', value: 'push' }]);
  assert.deepEqual(a.val.removeHeaders, ['x-secret']);
  assert.equal(a.val.idempotencyKey, 'k');
  assert.equal(a.val.route, 'r');
  assert.equal(t.acceptWithBody(new Uint8Array([1])).val.body[0], 1);
  assert.deepEqual(t.reject(401, 'no'), { tag: 'reject', val: { status: 401, reason: 'no' } });
  assert.deepEqual(t.drop(), { tag: 'drop' });
});

test('sorted JSON is what serde_json writes for a parsed Value', () => {
  const value = JSON.parse('{"b":{"z":1,"a":[true,null,{"d":"\\u0001\\n\\"","c":2.5}]},"a":"é","\\ud83d\\ude00":1,"\\uffff":2}');
  // Keys by code point: U+1F600 sorts after U+FFFF (UTF-16 order would not).
  assert.equal(stringifySorted(value), '{"a":"é","b":{"a":[true,null,{"c":2.5,"d":"\\u0001\\n\\""}],"z":1},"\uffff":2,"\ud83d\ude00":1}');
  assert.ok(compareCodePoints('\ud83d\ude00', '\uffff') > 0);
  assert.ok(compareCodePoints('a', 'b') < 0 && compareCodePoints('ab', 'a') > 0 && compareCodePoints('x', 'x') === 0);
});

test('scheme names, unknown schemes and secrets say what the Rust SDK says', () => {
  assert.equal(parseScheme(' Stripe '), 'stripe');
  assert.equal(parseScheme('STANDARD-WEBHOOKS'), 'standard-webhooks');
  const unknown = (() => {
    try {
      parseScheme('git-hub');
    } catch (e) {
      return e;
    }
  })();
  assert.ok(unknown instanceof UnknownScheme);
  assert.equal(unknown.message, 'unknown signature scheme "git-hub" (expected github, stripe, standard-webhooks, shopify or slack)');
  assert.throws(() => parseScheme(''), UnknownScheme);
  assert.deepEqual([...schemeKey('stripe', 'whsec_abc')], [...utf8Encode('whsec_abc')], 'Stripe uses its whsec_ secret as it is');
  assert.deepEqual([...schemeKey('standard-webhooks', 'whsec_AQID')], [1, 2, 3]);
  assert.deepEqual([...schemeKey('standard-webhooks', ' AQID ')], [1, 2, 3]);
  assert.throws(() => schemeKey('standard-webhooks', 'whsec_not base64!'), { message: 'a Standard Webhooks secret must be whsec_ followed by base64' });
  assert.throws(() => schemeKey('standard-webhooks', 'whsec_'), { message: 'the secret is empty' });
  assert.throws(() => schemeKey('github', ''), InvalidSecret);
  assert.equal(SignatureError.timestampOutOfTolerance(301n, 300).message, 'signature timestamp is 301s before the arrival time, outside the tolerance of 300s');
  assert.equal(SignatureError.timestampOutOfTolerance(-301n, 300).message, 'signature timestamp is 301s after the arrival time, outside the tolerance of 300s');
  assert.equal(SignatureError.malformedHeader('X-Hub-Signature-256', 'sha256=<64 hex digits>').message, 'malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)');
});

function files(dir) {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

test('types/ is what jco guest-types makes of wit/ (node tools/gen-types.mjs)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tmp = mkdtempSync(join(tmpdir(), 'weir-js-types-'));
  try {
    execFileSync(process.execPath, [join(root, 'tools', 'gen-types.mjs'), tmp]);
    const committed = files(join(root, 'types')).map((f) => relative(join(root, 'types'), f)).sort();
    assert.deepEqual(files(tmp).map((f) => relative(tmp, f)).sort(), committed);
    for (const f of committed) {
      assert.equal(readFileSync(join(tmp, f), 'utf8'), readFileSync(join(root, 'types', f), 'utf8'), `types/${f}: run node tools/gen-types.mjs`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
