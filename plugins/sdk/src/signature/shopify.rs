//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>`
//! under the app's client secret
//! (<https://shopify.dev/docs/apps/build/webhooks/subscribe/https>). The
//! request carries no signed timestamp, so there is no tolerance to check.

use super::{SignatureError, first_match, required};
use crate::Header;
use crate::crypto::{HmacSha256, base64_decode_array, base64_encode};

/// Header name, lower-case as Weir delivers it.
pub const HEADER: &str = "x-shopify-hmac-sha256";
const DISPLAY: &str = "X-Shopify-Hmac-Sha256";
const SHAPE: &str = "base64 of a 32-byte HMAC-SHA256";

/// Verify the request's `X-Shopify-Hmac-Sha256` over the raw `body` against
/// each of `keys`; `Ok` holds the index of the key that matched.
pub fn verify(keys: &[&[u8]], headers: &[Header], body: &[u8]) -> Result<usize, SignatureError> {
    let value = required(headers, HEADER, DISPLAY)?;
    let tag = base64_decode_array(value).ok_or(SignatureError::MalformedHeader {
        header: DISPLAY,
        expected: SHAPE,
    })?;
    first_match(keys, &[tag], |mac| {
        mac.update(body);
    })
}

/// The header value Shopify would send for `body` under `key` (for tests
/// and tooling).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new(key);
    mac.update(body);
    base64_encode(&mac.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let key = b"shpss_secret".as_slice();
        let body = br#"{"id":1}"#;
        let header = |v: &str| vec![Header::new("X-Shopify-Hmac-Sha256", v)];
        let good = sign(key, body);
        assert_eq!(verify(&[b"old", key], &header(&good), body), Ok(1));
        assert_eq!(
            verify(&[key], &header(good.trim_end_matches('=')), body),
            Ok(0),
            "padding is optional"
        );
        assert_eq!(
            verify(&[key], &header(&good), b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[key], &[], body),
            Err(SignatureError::MissingHeader("X-Shopify-Hmac-Sha256"))
        );
        let hex = crate::crypto::hex_encode(&crate::crypto::hmac_sha256(key, body));
        for bad in [hex.as_str(), "not base64!", &good[..good.len() - 4]] {
            assert_eq!(
                verify(&[key], &header(bad), body).map_err(|e| e.kind()),
                Err("malformed_header"),
                "{bad:?}"
            );
        }
    }
}
