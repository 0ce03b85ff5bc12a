//! HMAC-SHA256, hex and base64 helpers (RustCrypto `hmac` + `sha2`, the
//! `base64` crate).
//!
//! Comparisons of secrets-derived values are constant-time: use
//! [`verify_hmac_sha256`] or [`HmacSha256::verify`] rather than comparing
//! digests with `==`.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{KeyInit, Mac};

/// Size of an HMAC-SHA256 tag in bytes.
pub const TAG_LEN: usize = 32;

type Inner = hmac::Hmac<sha2::Sha256>;

/// An incremental HMAC-SHA256 computation.
///
/// Feeding the message in pieces avoids building a concatenated copy (the
/// Stripe scheme signs `"{timestamp}.{body}"`, for instance).
#[derive(Clone)]
pub struct HmacSha256(Inner);

impl HmacSha256 {
    /// Start an HMAC with `key` (any length is valid).
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of every length; this cannot fail.
        HmacSha256(Inner::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// Feed more of the message.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    /// The tag of everything fed so far.
    pub fn finalize(self) -> [u8; TAG_LEN] {
        self.0.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of everything fed so far, compared in
    /// constant time. A tag of the wrong length is simply not equal.
    pub fn verify(self, tag: &[u8]) -> bool {
        self.0.verify_slice(tag).is_ok()
    }
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new(key);
    mac.update(message);
    mac.finalize()
}

/// Whether `tag` is the HMAC-SHA256 of `message` under `key`, compared in
/// constant time.
pub fn verify_hmac_sha256(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let mut mac = HmacSha256::new(key);
    mac.update(message);
    mac.verify(tag)
}

/// Constant-time equality of two byte strings (the length itself is not
/// secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// Decode hexadecimal (either case, no separators, even length).
/// `None` on any other input.
pub fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?))
        .collect()
}

/// Decode hexadecimal into exactly `N` bytes; `None` on bad input or
/// length.
pub fn hex_decode_array<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?;
    }
    Some(out)
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Standard base64 (RFC 4648 `+/` alphabet). Encoding pads; decoding takes
/// the padding or leaves it out (providers differ), but refuses any other
/// deviation, non-canonical trailing bits included.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 of `bytes`, padded.
pub fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Decode standard base64, padded or not. `None` on any other input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// Decode standard base64 into exactly `N` bytes; `None` on bad input or
/// length.
pub fn base64_decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    // 4 characters per 3 bytes, so anything longer cannot be N bytes (and
    // is not worth decoding).
    if text.len() > N.div_ceil(3) * 4 {
        return None;
    }
    base64_decode(text)?.try_into().ok()
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231, test case 2.
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex_encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!verify_hmac_sha256(
            b"jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!verify_hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?",
            &tag[..31]
        ));
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut mac = HmacSha256::new(b"key");
        mac.update(b"123").update(b".").update(b"body");
        assert_eq!(mac.finalize(), hmac_sha256(b"key", b"123.body"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_decode("00ff7Fa0"), Some(vec![0x00, 0xff, 0x7f, 0xa0]));
        assert_eq!(hex_decode(""), Some(vec![]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("+1"), None);
        assert_eq!(hex_encode(&[0x00, 0xff, 0x7f, 0xa0]), "00ff7fa0");
        assert_eq!(hex_decode_array::<2>("BEEF"), Some([0xbe, 0xef]));
        assert_eq!(hex_decode_array::<2>("BEEF00"), None);
        assert_eq!(hex_decode_array::<2>("BEEG"), None);
    }

    #[test]
    fn base64_round_trip() {
        // RFC 4648, section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(
            base64_decode("Zg").as_deref(),
            Some(b"f".as_slice()),
            "unpadded"
        );
        assert_eq!(base64_decode("Zh=="), None, "non-canonical trailing bits");
        assert_eq!(base64_decode("Zm9v YmFy"), None);
        assert_eq!(base64_decode("Zm9-"), None, "URL-safe alphabet");
        assert_eq!(base64_decode_array::<3>("Zm9v"), Some(*b"foo"));
        assert_eq!(base64_decode_array::<3>("Zm8="), None);
        assert_eq!(base64_decode_array::<3>("Zm9vYmFy"), None);
    }

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
