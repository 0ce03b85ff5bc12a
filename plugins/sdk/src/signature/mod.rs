//! Webhook signature schemes from the field: [`github`], [`stripe`],
//! [`standard_webhooks`] (Svix and the many providers that follow it),
//! [`shopify`] and [`slack`], and [`Scheme`], which picks one by name.
//!
//! Every verifier takes a list of candidate keys so that a secret can be
//! rotated without downtime (current first, then the previous one): the
//! trigger is genuine if *any* key verifies it, and `Ok` holds the index of
//! that key. Tags are compared in constant time. Time comes from the caller
//! (the trigger's arrival time, [`Trigger::received_at_secs`]), never from a
//! clock, so a verdict can be reproduced at replay and in tests.
//!
//! ## Example
//!
//! ```no_run
//! use weir_plugin_sdk::signature::{DEFAULT_TOLERANCE_SECS, Scheme};
//! use weir_plugin_sdk::{Trigger, Verdict, fault, warn};
//!
//! fn check(trigger: &Trigger, scheme: &str, current: &str, previous: &str) -> Verdict {
//!     let scheme: Scheme = match scheme.parse() {
//!         Ok(scheme) => scheme,
//!         // UnknownScheme's reason names the known schemes.
//!         Err(unknown) => return Verdict::reject(401, unknown.to_string()),
//!     };
//!     // A secret the scheme cannot use is the operator's mistake: a fault.
//!     let key = |secret: &str| scheme.key(secret).unwrap_or_else(|e| fault(&e.to_string()));
//!     let (current, previous) = (key(current), key(previous));
//!     match scheme.verify_trigger(&[&current, &previous], trigger, DEFAULT_TOLERANCE_SECS) {
//!         Ok(0) => Verdict::accept_unchanged(),
//!         Ok(_) => {
//!             warn("signed with the previous secret: finish the rotation at the sender");
//!             Verdict::accept_unchanged()
//!         }
//!         Err(e) => Verdict::reject(401, e.to_string()),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The functions are plain Rust and can be unit-tested on the host; the
//! shared vectors in `tests/vectors/signatures/` (made by the providers'
//! official libraries) hold them to the same cases as the other SDKs.

use core::fmt;
use core::str::FromStr;

use crate::crypto::HmacSha256;
use crate::{Header, Trigger, find_header};

pub mod github;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;

#[cfg(test)]
mod vectors;

/// Default distance allowed between a signed timestamp and the arrival
/// time, in either direction: five minutes, as Stripe, Slack and Standard
/// Webhooks recommend.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a signature check failed. `Display` gives a reason fit for the
/// sender (it never includes secrets or expected signatures);
/// [`SignatureError::kind`] names the case for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent or empty (its display name).
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header does not have the scheme's shape.
    #[error("malformed {header} header (expected {expected})")]
    MalformedHeader {
        /// The header's display name.
        header: &'static str,
        /// The shape the scheme expects.
        expected: &'static str,
    },
    /// A genuine signature whose timestamp is too far from the arrival
    /// time (a replayed request, or a badly skewed clock). Only reported
    /// once the signature matched, so a forger learns nothing from it.
    #[error(
        "signature timestamp is {} the arrival time, outside the tolerance of {tolerance_secs}s",
        describe_age(.age_secs)
    )]
    TimestampOutOfTolerance {
        /// Arrival time minus the signed timestamp, in seconds (negative:
        /// signed in the future).
        age_secs: i64,
        /// The tolerance it was checked against, in seconds.
        tolerance_secs: u64,
    },
    /// No signature of the request matches it under any of the keys: a
    /// wrong secret, or a body or signed header changed on the way.
    #[error("signature mismatch: no signature matched the request under the configured secrets")]
    Mismatch,
}

fn describe_age(age_secs: &i64) -> String {
    let age_secs = *age_secs;
    if age_secs >= 0 {
        format!("{age_secs}s before")
    } else {
        format!("{}s after", age_secs.unsigned_abs())
    }
}

impl SignatureError {
    /// The case as a stable snake-case name, the one the shared test
    /// vectors use: `missing_header`, `malformed_header`,
    /// `timestamp_out_of_tolerance`, `mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_header",
            SignatureError::MalformedHeader { .. } => "malformed_header",
            SignatureError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// A webhook signature scheme, by the name a tenant's config gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `X-Hub-Signature-256`: [`github`].
    GitHub,
    /// `Stripe-Signature`: [`stripe`].
    Stripe,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`:
    /// [`standard_webhooks`].
    StandardWebhooks,
    /// `X-Shopify-Hmac-Sha256`: [`shopify`].
    Shopify,
    /// `X-Slack-Signature` and `X-Slack-Request-Timestamp`: [`slack`].
    Slack,
}

/// A scheme name that is not one of [`Scheme::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown signature scheme {0:?} (expected github, stripe, standard-webhooks, shopify or slack)"
)]
pub struct UnknownScheme(pub String);

/// A configured secret that the scheme cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    /// The secret is empty.
    #[error("the secret is empty")]
    Empty,
    /// A Standard Webhooks secret that is not `whsec_` + base64.
    #[error("a Standard Webhooks secret must be whsec_ followed by base64")]
    NotBase64,
}

impl Scheme {
    /// Every scheme, in the order of the docs.
    pub const ALL: [Scheme; 5] = [
        Scheme::GitHub,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
        Scheme::Shopify,
        Scheme::Slack,
    ];

    /// The config name: `github`, `stripe`, `standard-webhooks`,
    /// `shopify`, `slack`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::GitHub => "github",
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
        }
    }

    /// Whether the scheme signs a timestamp (and so checks a tolerance).
    pub fn is_timestamped(self) -> bool {
        matches!(
            self,
            Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Slack
        )
    }

    /// The HMAC key of a secret as the provider hands it out: the bytes
    /// of a Standard Webhooks `whsec_<base64>` secret, the UTF-8 bytes of
    /// any other (Stripe's `whsec_…` secrets included: Stripe uses them as
    /// they are).
    pub fn key(self, secret: &str) -> Result<Vec<u8>, InvalidSecret> {
        let key = match self {
            Scheme::StandardWebhooks => standard_webhooks::decode_secret(secret)?,
            _ => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(key)
    }

    /// Verify a request's `headers` and raw `body` against `keys` (see
    /// [`Scheme::key`]) at `now_secs`. `tolerance_secs` applies to the
    /// timestamped schemes; 0 disables the timestamp check. `Ok` holds the
    /// index of the key that matched.
    pub fn verify(
        self,
        keys: &[&[u8]],
        headers: &[Header],
        body: &[u8],
        now_secs: u64,
        tolerance_secs: u64,
    ) -> Result<usize, SignatureError> {
        match self {
            Scheme::GitHub => github::verify(keys, headers, body),
            Scheme::Stripe => stripe::verify(keys, headers, body, now_secs, tolerance_secs),
            Scheme::StandardWebhooks => {
                standard_webhooks::verify(keys, headers, body, now_secs, tolerance_secs)
            }
            Scheme::Shopify => shopify::verify(keys, headers, body),
            Scheme::Slack => slack::verify(keys, headers, body, now_secs, tolerance_secs),
        }
    }

    /// [`Scheme::verify`] on a trigger, at its arrival time.
    pub fn verify_trigger(
        self,
        keys: &[&[u8]],
        trigger: &Trigger,
        tolerance_secs: u64,
    ) -> Result<usize, SignatureError> {
        self.verify(
            keys,
            &trigger.headers,
            &trigger.body,
            trigger.received_at_secs(),
            tolerance_secs,
        )
    }
}

impl FromStr for Scheme {
    type Err = UnknownScheme;

    /// Parse a config name (surrounding whitespace and case ignored).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let trimmed = name.trim();
        Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownScheme(name.to_owned()))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// The pieces every scheme shares, each written once.
// ---------------------------------------------------------------------------

/// The trimmed value of header `name`; `MissingHeader(display)` when it is
/// absent or blank.
fn required<'a>(
    headers: &'a [Header],
    name: &str,
    display: &'static str,
) -> Result<&'a str, SignatureError> {
    find_header(headers, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::MissingHeader(display))
}

/// Unix seconds written as plain decimal digits (no sign, no fraction).
fn parse_unix_secs(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The index of the first key whose HMAC of the message (fed by `message`)
/// verifies one of `tags`, each compared in constant time.
fn first_match(
    keys: &[&[u8]],
    tags: &[[u8; crate::crypto::TAG_LEN]],
    message: impl Fn(&mut HmacSha256),
) -> Result<usize, SignatureError> {
    keys.iter()
        .position(|key| {
            let mut mac = HmacSha256::new(key);
            message(&mut mac);
            tags.iter().any(|tag| mac.clone().verify(tag))
        })
        .ok_or(SignatureError::Mismatch)
}

/// Whether `signed_secs` is within `tolerance_secs` of `now_secs`, either
/// direction; a tolerance of 0 disables the check.
fn check_tolerance(
    signed_secs: u64,
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let age = i128::from(now_secs) - i128::from(signed_secs);
    if tolerance_secs > 0 && age.unsigned_abs() > u128::from(tolerance_secs) {
        return Err(SignatureError::TimestampOutOfTolerance {
            age_secs: i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX }),
            tolerance_secs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names_round_trip() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
            assert_eq!(scheme.to_string(), scheme.name());
        }
        assert_eq!(" Stripe ".parse::<Scheme>(), Ok(Scheme::Stripe));
        let unknown = "svix".parse::<Scheme>().unwrap_err();
        assert_eq!(unknown, UnknownScheme("svix".into()));
        assert!(unknown.to_string().contains("standard-webhooks"));
        assert!("".parse::<Scheme>().is_err());
    }

    #[test]
    fn keys_by_scheme() {
        assert_eq!(
            Scheme::Stripe.key("whsec_abc"),
            Ok(b"whsec_abc".to_vec()),
            "Stripe uses its whsec_ secret as it is"
        );
        assert_eq!(
            Scheme::StandardWebhooks.key("whsec_AQID"),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(Scheme::StandardWebhooks.key("AQID"), Ok(vec![1, 2, 3]));
        assert_eq!(
            Scheme::StandardWebhooks.key("whsec_not base64!"),
            Err(InvalidSecret::NotBase64)
        );
        assert_eq!(
            Scheme::StandardWebhooks.key("whsec_"),
            Err(InvalidSecret::Empty)
        );
        assert_eq!(Scheme::GitHub.key(""), Err(InvalidSecret::Empty));
    }

    #[test]
    fn tolerance_both_directions() {
        assert_eq!(check_tolerance(1000, 1300, 300), Ok(()));
        assert_eq!(check_tolerance(1300, 1000, 300), Ok(()));
        let past = check_tolerance(1000, 1301, 300).unwrap_err();
        assert_eq!(
            past,
            SignatureError::TimestampOutOfTolerance {
                age_secs: 301,
                tolerance_secs: 300
            }
        );
        assert_eq!(
            past.to_string(),
            "signature timestamp is 301s before the arrival time, outside the tolerance of 300s"
        );
        let future = check_tolerance(1301, 1000, 300).unwrap_err();
        assert_eq!(
            future.to_string(),
            "signature timestamp is 301s after the arrival time, outside the tolerance of 300s"
        );
        assert_eq!(check_tolerance(0, u64::MAX, 0), Ok(()), "0 disables");
        assert!(matches!(
            check_tolerance(0, u64::MAX, 1),
            Err(SignatureError::TimestampOutOfTolerance {
                age_secs: i64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn unix_secs() {
        assert_eq!(parse_unix_secs("1767225600"), Some(1_767_225_600));
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "1e9",
            " 1",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_unix_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn error_kinds_and_reasons() {
        let cases = [
            (
                SignatureError::MissingHeader("Webhook-Id"),
                "missing_header",
                "missing Webhook-Id header",
            ),
            (
                SignatureError::MalformedHeader {
                    header: "X-Hub-Signature-256",
                    expected: "sha256=<64 hex digits>",
                },
                "malformed_header",
                "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
            ),
            (
                SignatureError::Mismatch,
                "mismatch",
                "signature mismatch: no signature matched the request under the configured secrets",
            ),
        ];
        for (error, kind, reason) in cases {
            assert_eq!(error.kind(), kind);
            assert_eq!(error.to_string(), reason);
        }
    }
}
