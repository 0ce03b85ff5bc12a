// sdk/crypto.js against node:crypto and the Rust SDK's cases (node runs the
// JavaScript paths; tools/qjs-selftest.js holds QuickJS's native ones to the
// same rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as c from '../sdk/crypto.js';
import { splice } from '../tools/gen-sha256.mjs';

const hex = (b) => Buffer.from(b).toString('hex');

test('sha256 and hmac-sha256 match node:crypto for every length 0..300', () => {
  for (let n = 0; n <= 300; n++) {
    const msg = randomBytes(n);
    const key = randomBytes(randomInt(0, 200)); // keys over 64 bytes are hashed first
    assert.equal(hex(c.sha256(msg)), createHash('sha256').update(msg).digest('hex'), `sha256 ${n}`);
    assert.equal(hex(c.hmacSha256(key, msg)), createHmac('sha256', key).update(msg).digest('hex'), `hmac ${n}`);
    // Fed in random pieces, and cloned halfway.
    const h = new c.HmacSha256(key);
    let i = 0;
    while (i < n) {
      const j = Math.min(n, i + randomInt(0, 70));
      h.update(msg.subarray(i, j));
      i = j;
    }
    const copy = h.clone();
    assert.equal(hex(h.digest()), hex(copy.digest()));
    assert.equal(hex(copy.clone().update('x').digest()).length, 64);
  }
});

test('RFC 4231 case 2 and verify', () => {
  const tag = c.hmacSha256('Jefe', 'what do ya want for nothing?');
  assert.equal(c.hexEncode(tag), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert.ok(c.verifyHmacSha256('Jefe', 'what do ya want for nothing?', tag));
  assert.ok(!c.verifyHmacSha256('jefe', 'what do ya want for nothing?', tag));
  assert.ok(!c.verifyHmacSha256('Jefe', 'what do ya want for nothing?', tag.subarray(0, 31)));
  assert.ok(c.constantTimeEqual(c.utf8Encode('abc'), c.utf8Encode('abc')));
  assert.ok(!c.constantTimeEqual(c.utf8Encode('abc'), c.utf8Encode('abd')));
  assert.ok(!c.constantTimeEqual(c.utf8Encode('abc'), c.utf8Encode('ab')));
  assert.ok(c.constantTimeEqual(new Uint8Array(0), new Uint8Array(0)));
});

test('hex as the Rust SDK reads and writes it', () => {
  assert.deepEqual([...c.hexDecode('00ff7Fa0')], [0x00, 0xff, 0x7f, 0xa0]);
  assert.deepEqual([...c.hexDecode('')], []);
  for (const bad of ['abc', 'zz', '+1', ' 0', '0x']) assert.equal(c.hexDecode(bad), null, bad);
  assert.equal(c.hexEncode(new Uint8Array([0x00, 0xff, 0x7f, 0xa0])), '00ff7fa0');
  assert.deepEqual([...c.hexDecode('BEEF', 2)], [0xbe, 0xef]);
  assert.equal(c.hexDecode('BEEF00', 2), null);
  for (let n = 0; n < 100; n++) {
    const b = randomBytes(n);
    assert.equal(c.hexEncode(b), b.toString('hex'));
    assert.deepEqual(Buffer.from(c.hexDecode(b.toString('hex').toUpperCase())), b);
  }
});

test('base64 as the Rust SDK reads and writes it: padding optional, nothing else', () => {
  for (const [plain, enc] of [['', ''], ['f', 'Zg=='], ['fo', 'Zm8='], ['foobar', 'Zm9vYmFy']]) {
    assert.equal(c.base64Encode(c.utf8Encode(plain)), enc);
    assert.equal(c.utf8Decode(c.base64Decode(enc)), plain);
  }
  assert.deepEqual([...c.base64Decode('Zg')], [102], 'unpadded');
  for (const bad of ['Zh==', 'Zm9v YmFy', 'Zm9-', 'Zg=', 'Z', '====', 'Zg==Zg==', ' Zg==', 'Zm9v\n']) {
    assert.equal(c.base64Decode(bad), null, JSON.stringify(bad));
  }
  assert.deepEqual([...c.base64Decode('Zm9v', 3)], [...c.utf8Encode('foo')]);
  assert.equal(c.base64Decode('Zm8=', 3), null);
  assert.equal(c.base64Decode('Zm9vYmFy', 3), null);
  assert.equal(c.base64UrlEncode(new Uint8Array([0xfb, 0xff])), '-_8');
  assert.deepEqual([...c.base64UrlDecode('-_8=')], [0xfb, 0xff]);
  assert.equal(c.base64UrlDecode('+/8='), null);
  for (let n = 0; n < 100; n++) {
    const b = randomBytes(n);
    assert.equal(c.base64Encode(b), b.toString('base64'));
    assert.deepEqual(Buffer.from(c.base64Decode(b.toString('base64'))), b);
    assert.deepEqual(Buffer.from(c.base64Decode(b.toString('base64').replace(/=+$/, ''))), b);
    assert.equal(c.base64UrlEncode(b), b.toString('base64url'));
    assert.deepEqual(Buffer.from(c.base64UrlDecode(b.toString('base64url'))), b);
  }
});

test('UTF-8 round trips, and strict decoding as Rust from_utf8', () => {
  for (const text of ['', 'plain', 'caf\u00e9 \u20ac \ud83d\ude00 \u0000 \uffff \u{10ffff}', 'x'.repeat(10000) + '\u00e9']) {
    const bytes = c.utf8Encode(text);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(text, 'utf8'));
    assert.equal(c.utf8Decode(bytes), text);
  }
  // A lone surrogate encodes as U+FFFD, as TextEncoder does.
  assert.deepEqual(Buffer.from(c.utf8Encode('a\ud800b\udc00')), Buffer.from(new TextEncoder().encode('a\ud800b\udc00')));
  const invalid = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xff], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x61, 0xf0, 0x9f]];
  const fatal = new TextDecoder('utf-8', { fatal: true });
  const lossy = new TextDecoder('utf-8');
  for (const bad of invalid) {
    const bytes = new Uint8Array(bad);
    assert.throws(() => fatal.decode(bytes));
    assert.equal(c.utf8Decode(bytes), null, `${bad}`);
    assert.equal(c.utf8Decode(bytes, { lossy: true }), lossy.decode(bytes), `lossy ${bad}`);
  }
  for (let n = 0; n < 200; n++) {
    const b = randomBytes(randomInt(0, 40));
    let want = null;
    try {
      want = fatal.decode(b);
    } catch {}
    assert.equal(c.utf8Decode(b), want, hex(b));
    assert.equal(c.utf8Decode(b, { lossy: true }), lossy.decode(b), hex(b));
  }
});

test('the unrolled SHA-256 rounds are what tools/gen-sha256.mjs makes', () => {
  const source = readFileSync(new URL('../sdk/crypto.js', import.meta.url), 'utf8');
  assert.equal(splice(source), source, 'run: node tools/gen-sha256.mjs --write');
});
