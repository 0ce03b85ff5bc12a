//! Pure-JavaScript bytes helpers for Weir plugins: UTF-8, hex, base64,
//! SHA-256, HMAC-SHA256 and a constant-time comparison.
//
// QuickJS (the engine componentize-qjs embeds) has no TextEncoder,
// TextDecoder nor WebCrypto, so everything here is plain JavaScript with no
// host import: node runs the same code in the unit tests. The hash is
// written for an interpreter: Int32 arithmetic only (every value stays a
// small integer, never a double), preallocated state, no allocation per
// 64-byte block.

// ---------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------

// utf8Encode in JavaScript (node, and lone surrogates in QuickJS).
function utf8EncodeJs(text) {
  const n = text.length;
  const out = new Uint8Array(n * 3);
  let o = 0;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[o++] = c;
    } else if (c < 0x800) {
      out[o++] = 0xc0 | (c >> 6);
      out[o++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? text.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out[o++] = 0xf0 | (c >> 18);
          out[o++] = 0x80 | ((c >> 12) & 0x3f);
          out[o++] = 0x80 | ((c >> 6) & 0x3f);
          out[o++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      out[o++] = 0xe0 | (c >> 12);
      out[o++] = 0x80 | ((c >> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    }
  }
  return o === out.length ? out : out.slice(0, o);
}

/** The bytes of a `string` (UTF-8) or the `Uint8Array` itself. */
export function toBytes(data) {
  if (typeof data === 'string') return utf8Encode(data);
  if (data instanceof Uint8Array) return data;
  if (Array.isArray(data) || ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
    return data instanceof ArrayBuffer ? new Uint8Array(data) : Uint8Array.from(data);
  }
  throw new TypeError('expected a string or a Uint8Array');
}

const CHUNK = 4096;

// utf8Decode in JavaScript (node, and lossy decoding of invalid input in
// QuickJS).
function utf8DecodeJs(bytes, options) {
  const lossy = !!(options && options.lossy);
  const n = bytes.length;
  const units = new Uint16Array(CHUNK + 2);
  let parts = '';
  let u = 0;
  let i = 0;
  while (i < n) {
    if (u >= CHUNK) {
      parts += String.fromCharCode.apply(null, units.subarray(0, u));
      u = 0;
    }
    const b = bytes[i];
    if (b < 0x80) {
      units[u++] = b;
      i++;
      continue;
    }
    // Sequence length and the valid range of its second byte.
    let len = 0;
    let lo = 0x80;
    let hi = 0xbf;
    let cp = 0;
    if (b >= 0xc2 && b <= 0xdf) {
      len = 2;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      cp = b & 0x0f;
      if (b === 0xe0) lo = 0xa0;
      else if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      cp = b & 0x07;
      if (b === 0xf0) lo = 0x90;
      else if (b === 0xf4) hi = 0x8f;
    }
    let k = 1;
    if (len > 0) {
      for (; k < len; k++) {
        const c = i + k < n ? bytes[i + k] : -1;
        if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) break;
        cp = (cp << 6) | (c & 0x3f);
      }
    }
    if (len === 0 || k < len) {
      if (!lossy) return null;
      units[u++] = 0xfffd;
      i += len === 0 ? 1 : k;
      continue;
    }
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units[u++] = 0xd800 | (cp >> 10);
      units[u++] = 0xdc00 | (cp & 0x3ff);
    } else {
      units[u++] = cp;
    }
  }
  return parts + String.fromCharCode.apply(null, units.subarray(0, u));
}

// ---------------------------------------------------------------------------
// Hex
// ---------------------------------------------------------------------------

const HEX = '0123456789abcdef';

function hexEncodeJs(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    s += HEX[b >> 4] + HEX[b & 15];
  }
  return s;
}

function nibble(c) {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function hexDecodeJs(hex, length) {
  if (hex.length % 2 !== 0) return null;
  if (length !== undefined && hex.length !== 2 * length) return null;
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) {
    const h = nibble(hex.charCodeAt(2 * i));
    const l = nibble(hex.charCodeAt(2 * i + 1));
    if (h < 0 || l < 0) return null;
    out[i] = (h << 4) | l;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Native fast paths. QuickJS-ng (in componentize-qjs 0.4.5) has
// Uint8Array.fromBase64/fromHex and .toBase64/.toHex (TC39 "Uint8Array to
// and from base64"), atob/btoa, escape/unescape and the URI functions, all
// in C; the byte-by-byte JavaScript loops below cost about 0.2 us per byte
// there (a 1 KiB body: ~230 us to decode, as much to encode) against a few
// microseconds natively. Node 20 lacks the Uint8Array methods, so the unit
// tests run the JavaScript paths; the component checks
// (tools/check-components.mjs) run the native ones. Every native result is
// held to the JavaScript path's rules (see each function).
// ---------------------------------------------------------------------------

const NATIVE =
  typeof Uint8Array.fromBase64 === 'function' &&
  typeof Uint8Array.fromHex === 'function' &&
  typeof Uint8Array.prototype.toBase64 === 'function' &&
  typeof Uint8Array.prototype.toHex === 'function';
const NATIVE_UTF8 =
  NATIVE &&
  typeof btoa === 'function' &&
  typeof atob === 'function' &&
  typeof escape === 'function' &&
  typeof unescape === 'function';

// A "binary string" holds one byte per UTF-16 unit (0..255).
function binaryToBytes(bin) {
  return Uint8Array.fromBase64(btoa(bin));
}
function bytesToBinary(bytes) {
  return atob(bytes.toBase64());
}
const HIGH_BYTE = /[\x80-\xff]/;

/**
 * UTF-8 bytes of `text`. A lone surrogate (a string that is not valid
 * UTF-16) becomes U+FFFD, as TextEncoder does.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function utf8Encode(text) {
  if (NATIVE_UTF8) {
    try {
      return binaryToBytes(unescape(encodeURIComponent(text)));
    } catch {
      // A lone surrogate (URIError): the JavaScript path replaces it.
    }
  }
  return utf8EncodeJs(text);
}

/**
 * Decode UTF-8. Strict by default: `null` for any invalid sequence
 * (overlong forms, surrogates, values over U+10FFFF, truncations), as
 * Rust's `str::from_utf8`. With `lossy`, each maximal invalid subpart
 * becomes U+FFFD instead (as TextDecoder and `String::from_utf8_lossy`).
 * @param {Uint8Array} bytes
 * @param {{lossy?: boolean}} [options]
 * @returns {string | null}
 */
export function utf8Decode(bytes, options) {
  if (NATIVE_UTF8) {
    const bin = bytesToBinary(bytes);
    if (!HIGH_BYTE.test(bin)) return bin;
    try {
      // decodeURIComponent refuses what from_utf8 refuses (URIError).
      return decodeURIComponent(escape(bin));
    } catch {
      if (!(options && options.lossy)) return null;
    }
  }
  return utf8DecodeJs(bytes, options);
}

/**
 * Lower-case hexadecimal of `bytes`.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function hexEncode(bytes) {
  return NATIVE ? bytes.toHex() : hexEncodeJs(bytes);
}

/**
 * Decode hexadecimal (either case, no separators, even length); `null` on
 * any other input. With `length`, `null` unless it decodes to exactly that
 * many bytes.
 * @param {string} hex
 * @param {number} [length]
 * @returns {Uint8Array | null}
 */
export function hexDecode(hex, length) {
  if (!NATIVE) return hexDecodeJs(hex, length);
  if (length !== undefined && hex.length !== 2 * length) return null;
  try {
    return Uint8Array.fromHex(hex);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Base64 (RFC 4648)
// ---------------------------------------------------------------------------

const STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function decodeTable(alphabet) {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  return t;
}
const STD_TABLE = decodeTable(STD);
const URL_TABLE = decodeTable(URL);

function encode64(bytes, alphabet, pad) {
  if (NATIVE) return bytes.toBase64({ alphabet: alphabet === STD ? 'base64' : 'base64url', omitPadding: !pad });
  let s = '';
  const n = bytes.length;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + alphabet[v & 63];
  }
  if (n - i === 1) {
    const v = bytes[i] << 16;
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + (pad ? '==' : '');
  } else if (n - i === 2) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    s += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + (pad ? '=' : '');
  }
  return s;
}

// Padded or not; when padded, the padding must complete the last quantum.
// Non-canonical trailing bits are refused (as Rust's `base64` crate does),
// so one byte string has exactly one accepted encoding per alphabet.
const STD_SHAPE = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_SHAPE = /^[A-Za-z0-9_-]*={0,2}$/;

function decode64(text, table) {
  if (NATIVE) {
    // fromBase64 also skips whitespace and ignores non-zero trailing bits:
    // the shape test and the round trip refuse what the JS path refuses.
    const url = table === URL_TABLE;
    if (!(url ? URL_SHAPE : STD_SHAPE).test(text)) return null;
    let out;
    try {
      out = Uint8Array.fromBase64(text, { alphabet: url ? 'base64url' : 'base64' });
    } catch {
      return null;
    }
    const again = out.toBase64({ alphabet: url ? 'base64url' : 'base64', omitPadding: !text.endsWith('=') });
    return again === text ? out : null;
  }
  return decode64Js(text, table);
}

function decode64Js(text, table) {
  let end = text.length;
  if (end % 4 === 0 && end > 0) {
    if (text.charCodeAt(end - 1) === 61) end--;
    if (text.charCodeAt(end - 1) === 61) end--;
  }
  const rest = end % 4;
  if (rest === 1) return null;
  const out = new Uint8Array(((end >> 2) * 3) + (rest === 0 ? 0 : rest - 1));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? table[c] : -1;
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

/**
 * Standard base64 (`+/`) of `bytes`, padded.
 * @param {Uint8Array} bytes
 */
export function base64Encode(bytes) {
  return encode64(bytes, STD, true);
}

/**
 * Decode standard base64, padded or not; `null` on any other input
 * (URL-safe characters, whitespace, non-canonical trailing bits). With
 * `length`, `null` unless it decodes to exactly that many bytes. The same
 * rule as the Rust SDK's `base64_decode`.
 * @param {string} text
 * @param {number} [length]
 * @returns {Uint8Array | null}
 */
export function base64Decode(text, length) {
  if (length !== undefined && text.length > Math.ceil(length / 3) * 4) return null;
  const out = decode64(text, STD_TABLE);
  if (out === null || (length !== undefined && out.length !== length)) return null;
  return out;
}

/**
 * URL-safe base64 (`-_`) of `bytes`, unpadded (RFC 4648 section 5).
 * @param {Uint8Array} bytes
 */
export function base64UrlEncode(bytes) {
  return encode64(bytes, URL, false);
}

/**
 * Decode URL-safe base64 (`-_`), padded or not; `null` otherwise.
 * @param {string} text
 * @returns {Uint8Array | null}
 */
export function base64UrlDecode(text) {
  return decode64(text, URL_TABLE);
}

// ---------------------------------------------------------------------------
// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104)
// ---------------------------------------------------------------------------

/** Size of a SHA-256 digest and of an HMAC-SHA256 tag, in bytes. */
export const TAG_LEN = 32;

const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

// One 64-byte block of `m` at `p` into the state `H` (Int32Array(8)).
// GENERATED by tools/gen-sha256.mjs: begin (do not edit by hand)
function compress(H, m, p) {
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7], t = 0, x = 0, y = 0;
  let w0 = (m[p + 0] << 24) | (m[p + 1] << 16) | (m[p + 2] << 8) | m[p + 3],
    w1 = (m[p + 4] << 24) | (m[p + 5] << 16) | (m[p + 6] << 8) | m[p + 7],
    w2 = (m[p + 8] << 24) | (m[p + 9] << 16) | (m[p + 10] << 8) | m[p + 11],
    w3 = (m[p + 12] << 24) | (m[p + 13] << 16) | (m[p + 14] << 8) | m[p + 15],
    w4 = (m[p + 16] << 24) | (m[p + 17] << 16) | (m[p + 18] << 8) | m[p + 19],
    w5 = (m[p + 20] << 24) | (m[p + 21] << 16) | (m[p + 22] << 8) | m[p + 23],
    w6 = (m[p + 24] << 24) | (m[p + 25] << 16) | (m[p + 26] << 8) | m[p + 27],
    w7 = (m[p + 28] << 24) | (m[p + 29] << 16) | (m[p + 30] << 8) | m[p + 31],
    w8 = (m[p + 32] << 24) | (m[p + 33] << 16) | (m[p + 34] << 8) | m[p + 35],
    w9 = (m[p + 36] << 24) | (m[p + 37] << 16) | (m[p + 38] << 8) | m[p + 39],
    w10 = (m[p + 40] << 24) | (m[p + 41] << 16) | (m[p + 42] << 8) | m[p + 43],
    w11 = (m[p + 44] << 24) | (m[p + 45] << 16) | (m[p + 46] << 8) | m[p + 47],
    w12 = (m[p + 48] << 24) | (m[p + 49] << 16) | (m[p + 50] << 8) | m[p + 51],
    w13 = (m[p + 52] << 24) | (m[p + 53] << 16) | (m[p + 54] << 8) | m[p + 55],
    w14 = (m[p + 56] << 24) | (m[p + 57] << 16) | (m[p + 58] << 8) | m[p + 59],
    w15 = (m[p + 60] << 24) | (m[p + 61] << 16) | (m[p + 62] << 8) | m[p + 63];
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((1116352408 + w0) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((1899447441 + w1) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((-1245643825 + w2) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((-373957723 + w3) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((961987163 + w4) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((1508970993 + w5) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((-1841331548 + w6) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((-1424204075 + w7) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((-670586216 + w8) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((310598401 + w9) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((607225278 + w10) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((1426881987 + w11) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((1925078388 + w12) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((-2132889090 + w13) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((-1680079193 + w14) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((-1046744716 + w15) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w1; y = w14; w0 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w9) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w0) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((-459576895 + w0) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w2; y = w15; w1 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w10) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w1) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((-272742522 + w1) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w3; y = w0; w2 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w11) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w2) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((264347078 + w2) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w4; y = w1; w3 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w12) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w3) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((604807628 + w3) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w5; y = w2; w4 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w13) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w4) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((770255983 + w4) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w6; y = w3; w5 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w14) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w5) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((1249150122 + w5) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w7; y = w4; w6 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w15) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w6) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((1555081692 + w6) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w8; y = w5; w7 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w0) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w7) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((1996064986 + w7) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w9; y = w6; w8 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w1) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w8) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((-1740746414 + w8) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w10; y = w7; w9 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w2) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w9) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((-1473132947 + w9) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w11; y = w8; w10 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w3) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w10) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((-1341970488 + w10) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w12; y = w9; w11 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w4) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w11) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((-1084653625 + w11) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w13; y = w10; w12 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w5) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w12) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((-958395405 + w12) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w14; y = w11; w13 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w6) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w13) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((-710438585 + w13) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w15; y = w12; w14 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w7) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w14) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((113926993 + w14) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w0; y = w13; w15 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w8) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w15) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((338241895 + w15) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w1; y = w14; w0 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w9) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w0) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((666307205 + w0) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w2; y = w15; w1 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w10) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w1) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((773529912 + w1) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w3; y = w0; w2 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w11) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w2) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((1294757372 + w2) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w4; y = w1; w3 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w12) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w3) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((1396182291 + w3) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w5; y = w2; w4 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w13) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w4) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((1695183700 + w4) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w6; y = w3; w5 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w14) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w5) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((1986661051 + w5) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w7; y = w4; w6 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w15) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w6) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((-2117940946 + w6) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w8; y = w5; w7 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w0) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w7) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((-1838011259 + w7) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w9; y = w6; w8 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w1) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w8) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((-1564481375 + w8) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w10; y = w7; w9 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w2) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w9) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((-1474664885 + w9) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w11; y = w8; w10 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w3) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w10) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((-1035236496 + w10) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w12; y = w9; w11 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w4) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w11) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((-949202525 + w11) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w13; y = w10; w12 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w5) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w12) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((-778901479 + w12) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w14; y = w11; w13 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w6) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w13) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((-694614492 + w13) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w15; y = w12; w14 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w7) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w14) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((-200395387 + w14) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w0; y = w13; w15 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w8) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w15) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((275423344 + w15) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w1; y = w14; w0 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w9) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w0) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((430227734 + w0) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w2; y = w15; w1 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w10) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w1) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((506948616 + w1) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w3; y = w0; w2 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w11) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w2) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((659060556 + w2) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w4; y = w1; w3 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w12) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w3) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((883997877 + w3) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w5; y = w2; w4 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w13) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w4) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((958139571 + w4) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w6; y = w3; w5 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w14) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w5) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((1322822218 + w5) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w7; y = w4; w6 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w15) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w6) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((1537002063 + w6) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w8; y = w5; w7 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w0) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w7) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((1747873779 + w7) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  x = w9; y = w6; w8 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w1) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w8) | 0)) | 0;
  t = (((((h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7)))) | 0) + (g ^ (e & (f ^ g)))) | 0) + ((1955562222 + w8) | 0)) | 0;
  d = (d + t) | 0; h = (t + (((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0)) | 0;
  x = w10; y = w7; w9 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w2) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w9) | 0)) | 0;
  t = (((((g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7)))) | 0) + (f ^ (d & (e ^ f)))) | 0) + ((2024104815 + w9) | 0)) | 0;
  c = (c + t) | 0; g = (t + (((((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0)) | 0;
  x = w11; y = w8; w10 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w3) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w10) | 0)) | 0;
  t = (((((f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7)))) | 0) + (e ^ (c & (d ^ e)))) | 0) + ((-2067236844 + w10) | 0)) | 0;
  b = (b + t) | 0; f = (t + (((((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0)) | 0;
  x = w12; y = w9; w11 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w4) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w11) | 0)) | 0;
  t = (((((e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7)))) | 0) + (d ^ (b & (c ^ d)))) | 0) + ((-1933114872 + w11) | 0)) | 0;
  a = (a + t) | 0; e = (t + (((((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0)) | 0;
  x = w13; y = w10; w12 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w5) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w12) | 0)) | 0;
  t = (((((d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7)))) | 0) + (c ^ (a & (b ^ c)))) | 0) + ((-1866530822 + w12) | 0)) | 0;
  h = (h + t) | 0; d = (t + (((((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0)) | 0;
  x = w14; y = w11; w13 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w6) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w13) | 0)) | 0;
  t = (((((c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7)))) | 0) + (b ^ (h & (a ^ b)))) | 0) + ((-1538233109 + w13) | 0)) | 0;
  g = (g + t) | 0; c = (t + (((((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0)) | 0;
  x = w15; y = w12; w14 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w7) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w14) | 0)) | 0;
  t = (((((b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7)))) | 0) + (a ^ (g & (h ^ a)))) | 0) + ((-1090935817 + w14) | 0)) | 0;
  f = (f + t) | 0; b = (t + (((((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0)) | 0;
  x = w0; y = w13; w15 = ((((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w8) | 0) + (((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w15) | 0)) | 0;
  t = (((((a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7)))) | 0) + (h ^ (f & (g ^ h)))) | 0) + ((-965641998 + w15) | 0)) | 0;
  e = (e + t) | 0; a = (t + (((((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0)) | 0;
  H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0; H[3] = (H[3] + d) | 0;
  H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0; H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
}
// GENERATED by tools/gen-sha256.mjs: end

/** An incremental SHA-256. */
export class Sha256 {
  constructor() {
    this.h = new Int32Array(IV);
    this.buf = new Uint8Array(64);
    this.bufLen = 0;
    this.total = 0;
  }

  /**
   * Feed more of the message (a `Uint8Array`, or a string: its UTF-8).
   * @returns {this}
   */
  update(data) {
    const m = toBytes(data);
    const n = m.length;
    this.total += n;
    let i = 0;
    if (this.bufLen > 0) {
      const take = Math.min(64 - this.bufLen, n);
      this.buf.set(m.subarray(0, take), this.bufLen);
      this.bufLen += take;
      i = take;
      if (this.bufLen < 64) return this;
      compress(this.h, this.buf, 0);
      this.bufLen = 0;
    }
    for (; i + 64 <= n; i += 64) compress(this.h, m, i);
    if (i < n) {
      this.buf.set(m.subarray(i), 0);
      this.bufLen = n - i;
    }
    return this;
  }

  /** The digest of everything fed so far (the hash is spent afterwards). */
  digest() {
    const buf = this.buf;
    let len = this.bufLen;
    buf[len++] = 0x80;
    if (len > 56) {
      buf.fill(0, len);
      compress(this.h, buf, 0);
      len = 0;
    }
    buf.fill(0, len, 56);
    // Message length in bits, big-endian, in 8 bytes (exact below 2^53).
    const bits = this.total * 8;
    const high = Math.floor(bits / 0x100000000);
    const low = bits - high * 0x100000000;
    buf[56] = high >>> 24;
    buf[57] = high >>> 16;
    buf[58] = high >>> 8;
    buf[59] = high;
    buf[60] = low >>> 24;
    buf[61] = low >>> 16;
    buf[62] = low >>> 8;
    buf[63] = low;
    compress(this.h, buf, 0);
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      const v = this.h[i];
      out[4 * i] = v >>> 24;
      out[4 * i + 1] = v >>> 16;
      out[4 * i + 2] = v >>> 8;
      out[4 * i + 3] = v;
    }
    return out;
  }

  /** An independent copy of this hash's state. */
  clone() {
    const c = new Sha256();
    c.h.set(this.h);
    c.buf.set(this.buf);
    c.bufLen = this.bufLen;
    c.total = this.total;
    return c;
  }
}

/**
 * SHA-256 of `data` (a `Uint8Array`, or a string: its UTF-8).
 * @returns {Uint8Array}
 */
export function sha256(data) {
  return new Sha256().update(data).digest();
}

/**
 * An incremental HMAC-SHA256. Feeding the message in pieces avoids a
 * concatenated copy (Stripe signs `"{timestamp}.{body}"`, for instance).
 */
export class HmacSha256 {
  /** @param {Uint8Array | string} key any length */
  constructor(key) {
    let k = toBytes(key);
    if (k.length > 64) k = sha256(k);
    const pad = new Uint8Array(64);
    pad.set(k);
    for (let i = 0; i < 64; i++) pad[i] ^= 0x36;
    this.inner = new Sha256().update(pad);
    for (let i = 0; i < 64; i++) pad[i] ^= 0x36 ^ 0x5c;
    this.outer = new Sha256().update(pad);
  }

  /** Feed more of the message. @returns {this} */
  update(data) {
    this.inner.update(data);
    return this;
  }

  /** The tag of everything fed so far (the HMAC is spent afterwards). */
  digest() {
    return this.outer.update(this.inner.digest()).digest();
  }

  /**
   * Whether `tag` is the tag of everything fed so far, compared in
   * constant time. A tag of the wrong length is simply not equal.
   */
  verify(tag) {
    return constantTimeEqual(this.digest(), tag);
  }

  /** An independent copy (to finish one prefix under several tags). */
  clone() {
    const c = Object.create(HmacSha256.prototype);
    c.inner = this.inner.clone();
    c.outer = this.outer.clone();
    return c;
  }
}

/**
 * HMAC-SHA256 of `message` under `key` (each a `Uint8Array` or a string).
 * @returns {Uint8Array}
 */
export function hmacSha256(key, message) {
  return new HmacSha256(key).update(message).digest();
}

/**
 * Whether `tag` is the HMAC-SHA256 of `message` under `key`, compared in
 * constant time.
 */
export function verifyHmacSha256(key, message, tag) {
  return new HmacSha256(key).update(message).verify(tag);
}

/**
 * Constant-time equality of two byte strings (the length itself is not
 * secret): the time depends on the length only, never on where they differ.
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
export function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
