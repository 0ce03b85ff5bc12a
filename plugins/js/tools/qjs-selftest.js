//! Crypto self-test that runs INSIDE the component (QuickJS), where
//! sdk/crypto.js takes its native fast paths (Uint8Array base64/hex,
//! URI-function UTF-8) that node 20 lacks: the same rules as
//! test/crypto.test.mjs holds the JavaScript paths to. Built and run by
//! tools/check-components.mjs; rejects with the failures, accepts when all pass.

import * as c from '../sdk/crypto.js';

const u8 = (...b) => new Uint8Array(b);
const eq = (a, b) => a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]);

export function handle(trigger) {
  const failures = [];
  const check = (ok, what) => {
    if (!ok) failures.push(what);
  };
  // Base64: RFC 4648 section 10, padding optional, nothing else.
  for (const [plain, enc] of [['', ''], ['f', 'Zg=='], ['fo', 'Zm8='], ['foobar', 'Zm9vYmFy']]) {
    check(c.base64Encode(c.utf8Encode(plain)) === enc, `base64Encode ${plain}`);
    check(c.utf8Decode(c.base64Decode(enc)) === plain, `base64Decode ${enc}`);
  }
  check(eq(c.base64Decode('Zg'), u8(102)), 'unpadded');
  for (const bad of ['Zh==', 'Zm9v YmFy', 'Zm9-', 'Zg=', 'Z', '====', 'Zg==Zg==', ' Zg==', 'Zm9v\n']) {
    check(c.base64Decode(bad) === null, `base64Decode refuses ${JSON.stringify(bad)}`);
  }
  check(eq(c.base64Decode('Zm9v', 3), c.utf8Encode('foo')), 'base64 length 3');
  check(c.base64Decode('Zm8=', 3) === null && c.base64Decode('Zm9vYmFy', 3) === null, 'base64 wrong length');
  check(c.base64UrlEncode(u8(0xfb, 0xff)) === '-_8' && eq(c.base64UrlDecode('-_8'), u8(0xfb, 0xff)), 'base64url');
  check(c.base64UrlDecode('+/8=') === null, 'base64url refuses +/');
  // Hex.
  check(eq(c.hexDecode('00ff7Fa0'), u8(0, 0xff, 0x7f, 0xa0)) && c.hexEncode(u8(0, 0xff, 0x7f, 0xa0)) === '00ff7fa0', 'hex');
  for (const bad of ['abc', 'zz', '+1', ' 00', '0x00']) check(c.hexDecode(bad) === null, `hexDecode refuses ${bad}`);
  check(c.hexDecode('BEEF', 2) !== null && c.hexDecode('BEEF00', 2) === null, 'hex length');
  // UTF-8, strict as Rust's from_utf8.
  const text = 'a\u00e9\u20ac\ud83d\ude00%+ \u0000';
  check(c.utf8Decode(c.utf8Encode(text)) === text, 'utf8 round trip');
  check(eq(c.utf8Encode('\ud800x'), u8(0xef, 0xbf, 0xbd, 0x78)), 'lone surrogate encodes as U+FFFD');
  for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xff], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
    check(c.utf8Decode(new Uint8Array(bad)) === null, `utf8Decode refuses ${bad}`);
  }
  check(c.utf8Decode(u8(0x61, 0xe2, 0x82, 0x62), { lossy: true }) === 'a\ufffdb', 'lossy');
  check(c.utf8Decode(u8(0xf0, 0x9f, 0x98, 0x80)) === '\ud83d\ude00', '4-byte');
  // Hash (RFC 4231 case 2) and the body.
  check(c.hexEncode(c.hmacSha256('Jefe', 'what do ya want for nothing?')) === '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', 'hmac');
  const want = trigger.headers.find((h) => h.name === 'x-sha256');
  if (want) check(c.hexEncode(c.sha256(trigger.body)) === want.value, 'sha256 of the body');
  if (failures.length > 0) return { tag: 'reject', val: { status: 400, reason: failures.join('; ') } };
  return { tag: 'accept', val: { setHeaders: [], removeHeaders: [] } };
}
