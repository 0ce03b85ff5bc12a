//! Stripe: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`, each
//! `v1` the HMAC-SHA256 of `"{t}.{raw body}"` under the endpoint's `whsec_…`
//! secret used as it is (<https://docs.stripe.com/webhooks#verify-manually>).
//! Other schemes (`v0`) and unknown items are ignored; `t` must be within
//! the tolerance of the arrival time, either direction.

use super::{SignatureError, check_tolerance, first_match, parse_unix_secs, required};
use crate::Header;
use crate::crypto::{HmacSha256, TAG_LEN, hex_decode_array, hex_encode};

/// Header name, lower-case as Weir delivers it.
pub const HEADER: &str = "stripe-signature";
const DISPLAY: &str = "Stripe-Signature";
const SHAPE: &str = "t=<unix seconds>,v1=<64 hex digits>";

/// Default timestamp tolerance, as in Stripe's own libraries.
pub const DEFAULT_TOLERANCE_SECS: u64 = super::DEFAULT_TOLERANCE_SECS;

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSignature {
    /// The `t` item: signing time, seconds since the Unix epoch.
    pub timestamp: u64,
    /// Every well-formed `v1` tag (malformed ones are skipped: they could
    /// never match). Stripe sends one per active secret while the
    /// endpoint's secret is being rolled.
    pub v1: Vec<[u8; TAG_LEN]>,
}

/// Parse the header value. `t` must appear exactly once and at least one
/// well-formed `v1` must be there.
pub fn parse_header(value: &str) -> Result<StripeSignature, SignatureError> {
    let malformed = SignatureError::MalformedHeader {
        header: DISPLAY,
        expected: SHAPE,
    };
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, val) = item.split_once('=').ok_or(malformed.clone())?;
        match key.trim() {
            "t" if timestamp.is_none() => {
                timestamp = Some(parse_unix_secs(val.trim()).ok_or(malformed.clone())?);
            }
            "t" => return Err(malformed),
            "v1" => v1.extend(hex_decode_array(val.trim())),
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !v1.is_empty() => Ok(StripeSignature { timestamp, v1 }),
        _ => Err(malformed),
    }
}

/// Verify the request's `Stripe-Signature` over the raw `body` against each
/// of `keys`, then check that the signed time is within `tolerance_secs`
/// of `now_secs` (0 disables that check, as in Stripe's libraries). `Ok`
/// holds the index of the key that matched.
pub fn verify(
    keys: &[&[u8]],
    headers: &[Header],
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<usize, SignatureError> {
    let sig = parse_header(required(headers, HEADER, DISPLAY)?)?;
    // Stripe's libraries sign the decimal of the parsed `t`.
    let t = sig.timestamp.to_string();
    let matched = first_match(keys, &sig.v1, |mac| {
        mac.update(t.as_bytes()).update(b".").update(body);
    })?;
    check_tolerance(sig.timestamp, now_secs, tolerance_secs)?;
    Ok(matched)
}

/// The header value Stripe would send for `body` signed at `timestamp`
/// under `key` (for tests and tooling).
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new(key);
    mac.update(timestamp.to_string().as_bytes())
        .update(b".")
        .update(body);
    format!("t={timestamp},v1={}", hex_encode(&mac.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> Vec<Header> {
        vec![Header::new("Stripe-Signature", value)]
    }

    #[test]
    fn parse() {
        let tag_a = [0xaa; 32];
        let tag_b = [0xbb; 32];
        let header = format!(
            "t=1492774577, v1={}, v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39,v1={},v1=nothex,x=y",
            hex_encode(&tag_a),
            hex_encode(&tag_b)
        );
        let sig = parse_header(&header).unwrap();
        assert_eq!(sig.timestamp, 1492774577);
        assert_eq!(sig.v1, vec![tag_a, tag_b]);

        let v1 = hex_encode(&tag_a);
        for bad in [
            format!("v1={v1}"),
            format!("t=abc,v1={v1}"),
            format!("t=-1,v1={v1}"),
            format!("t=1,t=2,v1={v1}"),
            "garbage".into(),
            "t=1".into(),
            "t=1,v1=abcd".into(),
            format!("t=1,v0={v1}"),
        ] {
            assert_eq!(
                parse_header(&bad).map_err(|e| e.kind()),
                Err("malformed_header"),
                "{bad}"
            );
        }
    }

    #[test]
    fn known_vector() {
        // python3: hmac.new(b"whsec_test", b"1700000000.{}", "sha256").hexdigest()
        let header =
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91";
        assert_eq!(sign(b"whsec_test", 1_700_000_000, b"{}"), header);
        assert_eq!(
            verify(
                &[b"whsec_test".as_slice()],
                &with(header),
                b"{}",
                1_700_000_100,
                300
            ),
            Ok(0)
        );
    }

    #[test]
    fn timestamp_and_tampering() {
        let key = b"whsec_abc".as_slice();
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let header = with(&sign(key, t, body));

        assert_eq!(verify(&[key], &header, body, t + 10, 300), Ok(0));
        assert_eq!(verify(&[key], &header, body, t - 10, 300), Ok(0));
        assert_eq!(
            verify(&[key], &header, body, t + 301, 300),
            Err(SignatureError::TimestampOutOfTolerance {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&[key], &header, body, t - 301, 300),
            Err(SignatureError::TimestampOutOfTolerance {
                age_secs: -301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&[key], &header, body, t + 1_000_000, 0),
            Ok(0),
            "tolerance 0 disables the timestamp check"
        );
        assert_eq!(
            verify(&[key], &header, b"tampered", t, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[key], &[], body, t, 300),
            Err(SignatureError::MissingHeader("Stripe-Signature"))
        );
    }

    #[test]
    fn rotation_and_several_v1() {
        let body = b"x";
        let t = 42;
        let old = sign(b"old", t, body);
        let new = sign(b"new", t, body);
        // Stripe sends one v1 per active secret while rolling its secret.
        let both = with(&format!("{new},{}", old.split(',').nth(1).unwrap()));
        let only_old: [&[u8]; 1] = [b"old"];
        let rotating: [&[u8]; 2] = [b"new", b"old"];
        assert_eq!(verify(&only_old, &both, body, t, 300), Ok(0));
        assert_eq!(verify(&rotating, &with(&old), body, t, 300), Ok(1));
        assert_eq!(verify(&rotating, &with(&new), body, t, 300), Ok(0));
    }
}
