//! JSON output as Rust's serde_json writes a `Value` (its default,
//! BTreeMap-backed maps): compact, object keys sorted at every level by
//! Unicode code point (= UTF-8 byte order). Pure JavaScript.

/**
 * Compare two strings by code point (UTF-16 order differs for characters
 * above U+FFFF against U+E000..U+FFFF).
 */
export function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800..U+DFFF) encode code points above U+FFFF: move
    // them above U+E000..U+FFFF.
    if (x >= 0xd800) x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Compact JSON of `value` with object keys sorted at every level (what
 * serde_json's `to_vec` gives for a parsed `Value`). Numbers are written as
 * JavaScript writes them (`1.0` comes out as `1`).
 */
export function stringifySorted(value) {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  }
  if (typeof value.toJSON === 'function') return stringifySorted(value.toJSON());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + stringifySorted(value[i]);
    return out + ']';
  }
  const keys = Object.keys(value).sort(compareCodePoints);
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = value[k];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    out += (first ? '' : ',') + JSON.stringify(k) + ':' + stringifySorted(v);
    first = false;
  }
  return out + '}';
}
