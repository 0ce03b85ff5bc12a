//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`
//! (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>).

use super::{SignatureError, first_match, required};
use crate::Header;
use crate::crypto::{HmacSha256, TAG_LEN, hex_decode_array, hex_encode};

/// Header name, lower-case as Weir delivers it.
pub const HEADER: &str = "x-hub-signature-256";
const DISPLAY: &str = "X-Hub-Signature-256";
const SHAPE: &str = "sha256=<64 hex digits>";

/// Parse the header value into the 32-byte tag (prefix and hex in either
/// case).
pub fn parse_header(value: &str) -> Result<[u8; TAG_LEN], SignatureError> {
    let malformed = SignatureError::MalformedHeader {
        header: DISPLAY,
        expected: SHAPE,
    };
    let value = value.trim();
    let hex = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| value.get(7..))
        .ok_or(malformed.clone())?;
    hex_decode_array(hex).ok_or(malformed)
}

/// Verify the request's `X-Hub-Signature-256` over the raw `body` against
/// each of `keys`; `Ok` holds the index of the key that matched.
pub fn verify(keys: &[&[u8]], headers: &[Header], body: &[u8]) -> Result<usize, SignatureError> {
    let tag = parse_header(required(headers, HEADER, DISPLAY)?)?;
    first_match(keys, &[tag], |mac| {
        mac.update(body);
    })
}

/// The header value GitHub would send for `body` under `key` (for tests
/// and tooling).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new(key);
    mac.update(body);
    format!("sha256={}", hex_encode(&mac.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> Vec<Header> {
        vec![Header::new("X-Hub-Signature-256", value)]
    }

    #[test]
    fn documented_example() {
        // From GitHub's "Validating webhook deliveries".
        let key = b"It's a Secret to Everybody".as_slice();
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(key, body), header);
        assert_eq!(verify(&[key], &with(header), body), Ok(0));
        assert_eq!(
            verify(&[key], &with(&header.to_uppercase()), body),
            Ok(0),
            "upper-case prefix and hex"
        );
    }

    #[test]
    fn failures() {
        let key = b"s3cret".as_slice();
        let body = b"{\"a\":1}";
        let good = sign(key, body);
        assert_eq!(
            verify(&[key], &[], body),
            Err(SignatureError::MissingHeader("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(&[key], &with("  "), body),
            Err(SignatureError::MissingHeader("X-Hub-Signature-256"))
        );
        for bad in [
            "sha1=abcd",
            "sha256=zz",
            "sha256",
            "sha25é=00",
            &good[..good.len() - 2],
        ] {
            assert_eq!(
                verify(&[key], &with(bad), body).map_err(|e| e.kind()),
                Err("malformed_header"),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(&[b"other".as_slice()], &with(&good), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[key], &with(&good), b"{\"a\":2}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[], &with(&good), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation() {
        let body = b"payload";
        let keys: [&[u8]; 2] = [b"new", b"old"];
        assert_eq!(verify(&keys, &with(&sign(b"new", body)), body), Ok(0));
        assert_eq!(verify(&keys, &with(&sign(b"old", body)), body), Ok(1));
        assert_eq!(
            verify(&keys[..1], &with(&sign(b"old", body)), body),
            Err(SignatureError::Mismatch)
        );
    }
}
