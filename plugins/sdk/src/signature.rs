//! Webhook signature schemes: GitHub (`X-Hub-Signature-256`) and Stripe
//! (`Stripe-Signature`).
//!
//! Both verifiers take a list of candidate secrets so that a secret can be
//! rotated without downtime: the trigger is genuine if *any* secret matches.
//! The functions are plain Rust and can be unit-tested on the host.

use core::fmt;

use crate::crypto::{HmacSha256, TAG_LEN, hex_decode_array};

/// Why a signature check failed. `Display` gives a reason suitable for the
/// sender (it never includes secrets or expected signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature header is absent (the header's display name).
    MissingHeader(&'static str),
    /// The signature header does not have the expected shape.
    MalformedHeader(&'static str),
    /// A Stripe header with no usable `v1` signature.
    NoV1Signature,
    /// The signature does not match the body under any secret.
    Mismatch,
    /// A correctly signed Stripe event whose timestamp is too far from the
    /// arrival time (a replay, or a badly skewed clock).
    TimestampOutOfTolerance {
        /// Arrival time minus the signed timestamp, in seconds.
        age_secs: i64,
        /// The configured tolerance, in seconds.
        tolerance_secs: u64,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::MissingHeader(h) => write!(f, "missing {h} header"),
            SignatureError::MalformedHeader(expected) => {
                write!(f, "malformed signature header (expected {expected})")
            }
            SignatureError::NoV1Signature => {
                f.write_str("Stripe-Signature header has no v1 signature")
            }
            SignatureError::Mismatch => f.write_str("signature mismatch"),
            SignatureError::TimestampOutOfTolerance {
                age_secs,
                tolerance_secs,
            } => write!(
                f,
                "signature timestamp is {age_secs}s from the arrival time, outside the tolerance of {tolerance_secs}s"
            ),
        }
    }
}

impl std::error::Error for SignatureError {}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
pub mod github {
    use super::*;

    /// Header name, lower-case as Weir delivers it.
    pub const HEADER: &str = "x-hub-signature-256";
    const DISPLAY: &str = "X-Hub-Signature-256";
    const SHAPE: &str = "sha256=<64 hex digits>";

    /// Parse the header value into the 32-byte tag.
    pub fn parse_header(value: &str) -> Result<[u8; TAG_LEN], SignatureError> {
        let value = value.trim();
        let hex = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256="))
            .map(|_| &value[7..])
            .ok_or(SignatureError::MalformedHeader(SHAPE))?;
        hex_decode_array(hex).ok_or(SignatureError::MalformedHeader(SHAPE))
    }

    /// Verify `header` (the header's value, `None` when absent) over the raw
    /// `body` against each of `secrets`.
    pub fn verify(
        secrets: &[&[u8]],
        body: &[u8],
        header: Option<&str>,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::MissingHeader(DISPLAY))?;
        let tag = parse_header(header)?;
        let genuine = secrets.iter().any(|secret| {
            let mut mac = HmacSha256::new(secret);
            mac.update(body);
            mac.verify(&tag)
        });
        if genuine {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// The header value GitHub would send for `body` under `secret` (for
    /// tests and tooling).
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        let tag = crate::crypto::hmac_sha256(secret, body);
        format!("sha256={}", crate::crypto::hex_encode(&tag))
    }
}

/// Stripe: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`, where
/// each `v1` is the HMAC-SHA256 of `"{t}.{raw body}"`. Other schemes (`v0`)
/// and unknown items are ignored.
pub mod stripe {
    use super::*;

    /// Header name, lower-case as Weir delivers it.
    pub const HEADER: &str = "stripe-signature";
    const DISPLAY: &str = "Stripe-Signature";
    const SHAPE: &str = "t=<unix seconds>,v1=<hex>";

    /// Default timestamp tolerance, as in Stripe's own libraries.
    pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

    /// A parsed `Stripe-Signature` header.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StripeSignature {
        /// The `t` item: signing time, seconds since the Unix epoch.
        pub timestamp: u64,
        /// Every well-formed `v1` tag (malformed ones are skipped: they
        /// could never match).
        pub v1: Vec<[u8; TAG_LEN]>,
    }

    /// Parse the header value. `t` must appear exactly once; `v1` may
    /// appear any number of times (Stripe sends one per active secret).
    pub fn parse_header(value: &str) -> Result<StripeSignature, SignatureError> {
        let malformed = SignatureError::MalformedHeader(SHAPE);
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, val) = item.split_once('=').ok_or(malformed.clone())?;
            match key.trim() {
                "t" => {
                    let val = val.trim();
                    if timestamp.is_some()
                        || val.is_empty()
                        || !val.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(malformed);
                    }
                    timestamp = Some(val.parse::<u64>().map_err(|_| malformed.clone())?);
                }
                "v1" => {
                    if let Some(tag) = hex_decode_array(val.trim()) {
                        v1.push(tag);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(malformed)?;
        if v1.is_empty() {
            return Err(SignatureError::NoV1Signature);
        }
        Ok(StripeSignature { timestamp, v1 })
    }

    /// Verify `header` (the header's value, `None` when absent) over the raw
    /// `body` against each of `secrets`, then check that the signed
    /// timestamp is within `tolerance_secs` of `now_secs` (in either
    /// direction). A tolerance of 0 disables the timestamp check, as in
    /// Stripe's libraries.
    pub fn verify(
        secrets: &[&[u8]],
        body: &[u8],
        header: Option<&str>,
        now_secs: u64,
        tolerance_secs: u64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::MissingHeader(DISPLAY))?;
        let sig = parse_header(header)?;
        let t_buf = itoa_u64(sig.timestamp);
        let genuine = secrets.iter().any(|secret| {
            let mut mac = HmacSha256::new(secret);
            mac.update(t_buf.as_bytes()).update(b".").update(body);
            sig.v1.iter().any(|tag| mac.clone().verify(tag))
        });
        if !genuine {
            return Err(SignatureError::Mismatch);
        }
        let age = i128::from(now_secs) - i128::from(sig.timestamp);
        if tolerance_secs > 0 && age.unsigned_abs() > u128::from(tolerance_secs) {
            return Err(SignatureError::TimestampOutOfTolerance {
                age_secs: age.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
                tolerance_secs,
            });
        }
        Ok(())
    }

    /// The header value Stripe would send for `body` signed at `timestamp`
    /// under `secret` (for tests and tooling).
    pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
        let mut mac = HmacSha256::new(secret);
        mac.update(itoa_u64(timestamp).as_bytes())
            .update(b".")
            .update(body);
        format!(
            "t={timestamp},v1={}",
            crate::crypto::hex_encode(&mac.finalize())
        )
    }

    fn itoa_u64(n: u64) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(20);
        let _ = write!(s, "{n}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex_encode;

    #[test]
    fn github_known_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(github::sign(secret, body), header);
        assert_eq!(github::verify(&[secret], body, Some(header)), Ok(()));
        // Upper-case hex and prefix are accepted too.
        assert_eq!(
            github::verify(&[secret], body, Some(&header.to_uppercase())),
            Ok(())
        );
    }

    #[test]
    fn github_failures() {
        let secret = b"s3cret".as_slice();
        let body = b"{\"a\":1}";
        let good = github::sign(secret, body);
        assert_eq!(
            github::verify(&[secret], body, None),
            Err(SignatureError::MissingHeader("X-Hub-Signature-256"))
        );
        assert!(matches!(
            github::verify(&[secret], body, Some("sha1=abcd")),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            github::verify(&[secret], body, Some("sha256=zz")),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            github::verify(&[secret], body, Some(&good[..good.len() - 2])),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert_eq!(
            github::verify(&[b"other".as_slice()], body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            github::verify(&[secret], b"{\"a\":2}", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            github::verify(&[], body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            SignatureError::MissingHeader("X-Hub-Signature-256").to_string(),
            "missing X-Hub-Signature-256 header"
        );
    }

    #[test]
    fn github_rotation() {
        let body = b"payload";
        let old = github::sign(b"old", body);
        let new = github::sign(b"new", body);
        let secrets: [&[u8]; 2] = [b"new", b"old"];
        assert_eq!(github::verify(&secrets, body, Some(&old)), Ok(()));
        assert_eq!(github::verify(&secrets, body, Some(&new)), Ok(()));
    }

    #[test]
    fn stripe_parse() {
        let tag_a = [0xaa; 32];
        let tag_b = [0xbb; 32];
        let header = format!(
            "t=1492774577, v1={}, v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39,v1={},v1=nothex,x=y",
            hex_encode(&tag_a),
            hex_encode(&tag_b)
        );
        let sig = stripe::parse_header(&header).unwrap();
        assert_eq!(sig.timestamp, 1492774577);
        assert_eq!(sig.v1, vec![tag_a, tag_b]);

        assert!(matches!(
            stripe::parse_header("v1=aa"),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            stripe::parse_header("t=abc,v1=aa"),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            stripe::parse_header("t=-1,v1=aa"),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            stripe::parse_header("t=1,t=2,v1=aa"),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert!(matches!(
            stripe::parse_header("garbage"),
            Err(SignatureError::MalformedHeader(_))
        ));
        assert_eq!(
            stripe::parse_header("t=1"),
            Err(SignatureError::NoV1Signature)
        );
        assert_eq!(
            stripe::parse_header("t=1,v1=abcd"),
            Err(SignatureError::NoV1Signature)
        );
    }

    #[test]
    fn stripe_known_vector() {
        // python3: hmac.new(b"whsec_test", b"1700000000.{}", "sha256").hexdigest()
        let header =
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91";
        assert_eq!(stripe::sign(b"whsec_test", 1_700_000_000, b"{}"), header);
        assert_eq!(
            stripe::verify(
                &[b"whsec_test".as_slice()],
                b"{}",
                Some(header),
                1_700_000_100,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn stripe_verify() {
        let secret = b"whsec_abc".as_slice();
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let header = stripe::sign(secret, t, body);

        assert_eq!(
            stripe::verify(&[secret], body, Some(&header), t + 10, 300),
            Ok(())
        );
        assert_eq!(
            stripe::verify(&[secret], body, Some(&header), t - 10, 300),
            Ok(())
        );
        assert_eq!(
            stripe::verify(&[secret], body, Some(&header), t + 301, 300),
            Err(SignatureError::TimestampOutOfTolerance {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            stripe::verify(&[secret], body, Some(&header), t - 301, 300),
            Err(SignatureError::TimestampOutOfTolerance {
                age_secs: -301,
                tolerance_secs: 300
            })
        );
        // Tolerance 0 disables the timestamp check.
        assert_eq!(
            stripe::verify(&[secret], body, Some(&header), t + 1_000_000, 0),
            Ok(())
        );
        assert_eq!(
            stripe::verify(&[b"whsec_other".as_slice()], body, Some(&header), t, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe::verify(&[secret], b"tampered", Some(&header), t, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is part of the signed payload.
        let forged = header.replacen("t=1700000000", "t=1700000001", 1);
        assert_eq!(
            stripe::verify(&[secret], body, Some(&forged), t, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe::verify(&[secret], body, None, t, 300),
            Err(SignatureError::MissingHeader("Stripe-Signature"))
        );
    }

    #[test]
    fn stripe_rotation_and_multiple_v1() {
        let body = b"x";
        let t = 42;
        let old = stripe::sign(b"old", t, body);
        let new = stripe::sign(b"new", t, body);
        // Stripe sends one v1 per active secret during its own rotation.
        let both = format!("{new},{}", old.split(',').nth(1).unwrap());
        let only_old: [&[u8]; 1] = [b"old"];
        let rotating: [&[u8]; 2] = [b"new", b"old"];
        assert_eq!(stripe::verify(&only_old, body, Some(&both), t, 300), Ok(()));
        assert_eq!(stripe::verify(&rotating, body, Some(&old), t, 300), Ok(()));
        assert_eq!(stripe::verify(&rotating, body, Some(&new), t, 300), Ok(()));
    }
}
