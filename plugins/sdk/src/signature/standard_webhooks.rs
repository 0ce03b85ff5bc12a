//! Standard Webhooks (<https://www.standardwebhooks.com/>), the scheme Svix
//! and many providers send: `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`, a space-separated list of
//! `v1,<base64>` signatures, each the HMAC-SHA256 of
//! `"{id}.{timestamp}.{raw body}"` under the bytes of a `whsec_<base64>`
//! secret. Other versions (`v1a,` asymmetric signatures) are skipped.
//!
//! Svix's own header names (`svix-id`, `svix-timestamp`, `svix-signature`)
//! are read when the request carries none of the `webhook-*` ones, as
//! Svix's libraries do.

use super::{
    InvalidSecret, SignatureError, check_tolerance, first_match, parse_unix_secs, required,
};
use crate::crypto::{HmacSha256, TAG_LEN, base64_decode, base64_decode_array, base64_encode};
use crate::{Header, find_header};

/// Header names, lower-case as Weir delivers them.
pub const ID_HEADER: &str = "webhook-id";
/// See [`ID_HEADER`].
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// See [`ID_HEADER`].
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

const SIGNATURE_SHAPE: &str = "space-separated v1,<base64 of 32 bytes>";
const TIMESTAMP_SHAPE: &str = "<unix seconds>";

/// One naming of the three headers: (lower-case name, display name).
struct Names {
    id: (&'static str, &'static str),
    timestamp: (&'static str, &'static str),
    signature: (&'static str, &'static str),
}

const WEBHOOK: Names = Names {
    id: (ID_HEADER, "Webhook-Id"),
    timestamp: (TIMESTAMP_HEADER, "Webhook-Timestamp"),
    signature: (SIGNATURE_HEADER, "Webhook-Signature"),
};

const SVIX: Names = Names {
    id: ("svix-id", "Svix-Id"),
    timestamp: ("svix-timestamp", "Svix-Timestamp"),
    signature: ("svix-signature", "Svix-Signature"),
};

impl Names {
    fn any_in(&self, headers: &[Header]) -> bool {
        [self.id, self.timestamp, self.signature]
            .iter()
            .any(|(name, _)| find_header(headers, name).is_some())
    }

    /// `svix-*` only when no `webhook-*` header is there, so a missing
    /// `webhook-*` header is reported as missing rather than papered over.
    fn of(headers: &[Header]) -> &'static Names {
        if !WEBHOOK.any_in(headers) && SVIX.any_in(headers) {
            &SVIX
        } else {
            &WEBHOOK
        }
    }
}

/// The key of a secret: the base64 after the optional `whsec_` prefix.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    let key = base64_decode(encoded).ok_or(InvalidSecret::NotBase64)?;
    if key.is_empty() {
        return Err(InvalidSecret::Empty);
    }
    Ok(key)
}

/// Every well-formed `v1` signature of a `webhook-signature` value; at
/// least one must be there.
pub fn parse_signatures(value: &str) -> Result<Vec<[u8; TAG_LEN]>, SignatureError> {
    parse_signatures_of(value, WEBHOOK.signature.1)
}

fn parse_signatures_of(
    value: &str,
    display: &'static str,
) -> Result<Vec<[u8; TAG_LEN]>, SignatureError> {
    let tags: Vec<_> = value
        .split(' ')
        .filter_map(|item| item.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| base64_decode_array(sig))
        .collect();
    if tags.is_empty() {
        return Err(SignatureError::MalformedHeader {
            header: display,
            expected: SIGNATURE_SHAPE,
        });
    }
    Ok(tags)
}

/// Verify the request's `webhook-*` headers over the raw `body` against each
/// of `keys` (see [`decode_secret`]), then check that the signed time is
/// within `tolerance_secs` of `now_secs`, either direction (0 disables that
/// check). `Ok` holds the index of the key that matched.
pub fn verify(
    keys: &[&[u8]],
    headers: &[Header],
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<usize, SignatureError> {
    let names = Names::of(headers);
    let id = required(headers, names.id.0, names.id.1)?;
    let timestamp = required(headers, names.timestamp.0, names.timestamp.1)?;
    let signatures = required(headers, names.signature.0, names.signature.1)?;
    let timestamp = parse_unix_secs(timestamp).ok_or(SignatureError::MalformedHeader {
        header: names.timestamp.1,
        expected: TIMESTAMP_SHAPE,
    })?;
    let tags = parse_signatures_of(signatures, names.signature.1)?;
    // The reference libraries sign the decimal of the parsed timestamp.
    let t = timestamp.to_string();
    let matched = first_match(keys, &tags, |mac| {
        mac.update(id.as_bytes())
            .update(b".")
            .update(t.as_bytes())
            .update(b".")
            .update(body);
    })?;
    check_tolerance(timestamp, now_secs, tolerance_secs)?;
    Ok(matched)
}

/// The `webhook-signature` value a sender would send (one signature) for
/// message `id` at `timestamp` under `key` (for tests and tooling).
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new(key);
    mac.update(format!("{id}.{timestamp}.").as_bytes())
        .update(body);
    format!("v1,{}", base64_encode(&mac.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, timestamp: &str, signature: &str) -> Vec<Header> {
        vec![
            Header::new("webhook-id", id),
            Header::new("webhook-timestamp", timestamp),
            Header::new("webhook-signature", signature),
        ]
    }

    #[test]
    fn specification_example() {
        // The example of the Standard Webhooks specification (and of Svix's
        // "verifying manually" guide).
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, t, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(&key, id, t, body), expected);
        assert_eq!(
            verify(&[&key], &headers(id, "1614265330", expected), body, t, 300),
            Ok(0)
        );
    }

    #[test]
    fn signatures_list() {
        let a = base64_encode(&[1; 32]);
        let b = base64_encode(&[2; 32]);
        assert_eq!(
            parse_signatures(&format!("v1,{a}  v1a,{a} v2,{a} v1,short v1,{b}")),
            Ok(vec![[1; 32], [2; 32]])
        );
        for bad in [
            "",
            &a,
            &format!("v1a,{a}"),
            "v1,",
            "v1,not base64!",
            &format!("v1;{a}"),
        ] {
            assert_eq!(
                parse_signatures(bad).map_err(|e| e.kind()),
                Err("malformed_header"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn svix_names_only_without_webhook_names() {
        let key = [7u8; 24];
        let body = b"{}";
        let sig = sign(&key, "msg_1", 100, body);
        let svix = vec![
            Header::new("svix-id", "msg_1"),
            Header::new("svix-timestamp", "100"),
            Header::new("svix-signature", &sig),
        ];
        assert_eq!(verify(&[&key], &svix, body, 100, 300), Ok(0));
        let mut mixed = svix.clone();
        mixed.push(Header::new("webhook-id", "msg_1"));
        assert_eq!(
            verify(&[&key], &mixed, body, 100, 300),
            Err(SignatureError::MissingHeader("Webhook-Timestamp"))
        );
        assert_eq!(
            verify(&[&key], &svix[..2], body, 100, 300),
            Err(SignatureError::MissingHeader("Svix-Signature"))
        );
    }

    #[test]
    fn secrets() {
        assert_eq!(decode_secret("whsec_AQID"), Ok(vec![1, 2, 3]));
        assert_eq!(decode_secret(" whsec_AQID "), Ok(vec![1, 2, 3]));
        assert_eq!(decode_secret("AQID"), Ok(vec![1, 2, 3]));
        assert_eq!(decode_secret("whsec_AQ-D"), Err(InvalidSecret::NotBase64));
        assert_eq!(decode_secret("whsec_"), Err(InvalidSecret::Empty));
    }
}
