//! Slack: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `"v0:{X-Slack-Request-Timestamp}:{raw body}"` under the app's signing
//! secret (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//! The timestamp must be within the tolerance of the arrival time (Slack
//! suggests five minutes); Weir checks both directions.

use super::{SignatureError, check_tolerance, first_match, parse_unix_secs, required};
use crate::Header;
use crate::crypto::{HmacSha256, hex_decode_array, hex_encode};

/// Header names, lower-case as Weir delivers them.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// See [`SIGNATURE_HEADER`].
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
const SIGNATURE_DISPLAY: &str = "X-Slack-Signature";
const TIMESTAMP_DISPLAY: &str = "X-Slack-Request-Timestamp";
const SIGNATURE_SHAPE: &str = "v0=<64 hex digits>";
const TIMESTAMP_SHAPE: &str = "<unix seconds>";

/// Verify the request's `X-Slack-Signature` and `X-Slack-Request-Timestamp`
/// over the raw `body` against each of `keys`, then check that the signed
/// time is within `tolerance_secs` of `now_secs` (0 disables that check).
/// `Ok` holds the index of the key that matched.
pub fn verify(
    keys: &[&[u8]],
    headers: &[Header],
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<usize, SignatureError> {
    let signature = required(headers, SIGNATURE_HEADER, SIGNATURE_DISPLAY)?;
    let timestamp_text = required(headers, TIMESTAMP_HEADER, TIMESTAMP_DISPLAY)?;
    let timestamp = parse_unix_secs(timestamp_text).ok_or(SignatureError::MalformedHeader {
        header: TIMESTAMP_DISPLAY,
        expected: TIMESTAMP_SHAPE,
    })?;
    let tag = signature
        .strip_prefix("v0=")
        .and_then(hex_decode_array)
        .ok_or(SignatureError::MalformedHeader {
            header: SIGNATURE_DISPLAY,
            expected: SIGNATURE_SHAPE,
        })?;
    // Slack signs the header's text as sent.
    let matched = first_match(keys, &[tag], |mac| {
        mac.update(b"v0:")
            .update(timestamp_text.as_bytes())
            .update(b":")
            .update(body);
    })?;
    check_tolerance(timestamp, now_secs, tolerance_secs)?;
    Ok(matched)
}

/// The `X-Slack-Signature` value Slack would send for `body` at
/// `timestamp` under `key` (for tests and tooling).
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new(key);
    mac.update(format!("v0:{timestamp}:").as_bytes())
        .update(body);
    format!("v0={}", hex_encode(&mac.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example() {
        // The worked example of Slack's "Verifying requests from Slack".
        let key = b"8f742231b10e8888abcd99yyyzzz85a5".as_slice();
        let t = 1531420618;
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(key, t, body), expected);
        let headers = [
            Header::new("X-Slack-Request-Timestamp", "1531420618"),
            Header::new("X-Slack-Signature", expected),
        ];
        assert_eq!(verify(&[b"other", key], &headers, body, t + 60, 300), Ok(1));
        assert_eq!(
            verify(&[key], &headers, body, t + 301, 300).map_err(|e| e.kind()),
            Err("timestamp_out_of_tolerance")
        );
    }
}
