//! `hmac-verify`: accepts only triggers whose webhook signature is valid.
//!
//! Tenant config (`[tenants.config]`):
//!
//! | key               | meaning                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | `secret`          | required: the signing secret                                   |
//! | `secret_previous` | optional: the previous secret, also accepted during a rotation |
//! | `scheme`          | `github` (default) or `stripe`                                 |
//! | `tolerance_secs`  | Stripe only: max distance between the signed timestamp and the arrival time, default 300; 0 disables the check |
//!
//! * `github`: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//!   raw body.
//! * `stripe`: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`,
//!   each `v1` the HMAC-SHA256 of `"{t}.{raw body}"`; `t` must be within
//!   `tolerance_secs` of the trigger's arrival time (either direction).
//!
//! A missing, malformed or wrong signature is the sender's problem: the
//! trigger is rejected with 401 and a reason saying which. A missing
//! `secret`, an unknown `scheme` or a non-numeric `tolerance_secs` is the
//! operator's problem, which a 4xx would blame on the sender (and the
//! contract allows no 5xx reject): the plugin logs the error and panics,
//! which Weir handles as a plugin fault (the trigger is quarantined, or
//! answered 503 with `on_plugin_error = "reject"`), so nothing is lost while
//! the configuration is fixed.
//!
//! Valid triggers are accepted unchanged (no body copy).

use weir_plugin_sdk::signature::{SignatureError, github, stripe};
use weir_plugin_sdk::{Plugin, Trigger, Verdict, config, export_plugin, fault, info, warn};

enum Scheme {
    GitHub,
    Stripe { tolerance_secs: u64 },
}

fn scheme() -> Scheme {
    match config("scheme").as_deref().map(str::trim) {
        None | Some("") | Some("github") => Scheme::GitHub,
        Some("stripe") => {
            let tolerance_secs = match config("tolerance_secs") {
                None => stripe::DEFAULT_TOLERANCE_SECS,
                Some(v) => v.trim().parse().unwrap_or_else(|_| {
                    fault("hmac-verify: config `tolerance_secs` must be a whole number of seconds")
                }),
            };
            Scheme::Stripe { tolerance_secs }
        }
        Some(_) => fault("hmac-verify: config `scheme` must be \"github\" or \"stripe\""),
    }
}

fn verify(scheme: &Scheme, secret: &[u8], trigger: &Trigger) -> Result<(), SignatureError> {
    match scheme {
        Scheme::GitHub => github::verify(&[secret], &trigger.body, trigger.header(github::HEADER)),
        Scheme::Stripe { tolerance_secs } => stripe::verify(
            &[secret],
            &trigger.body,
            trigger.header(stripe::HEADER),
            trigger.received_at_secs(),
            *tolerance_secs,
        ),
    }
}

struct HmacVerify;

impl Plugin for HmacVerify {
    fn handle(trigger: Trigger) -> Verdict {
        let secret = config("secret")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fault("hmac-verify: tenant config key `secret` is not set"));
        let scheme = scheme();

        let mut result = verify(&scheme, secret.as_bytes(), &trigger);
        if result == Err(SignatureError::Mismatch)
            && let Some(previous) = config("secret_previous").filter(|s| !s.is_empty())
        {
            result = verify(&scheme, previous.as_bytes(), &trigger);
            if result.is_ok() {
                info(
                    "hmac-verify: signature matched `secret_previous`; finish the rotation at the sender",
                );
            }
        }

        match result {
            Ok(()) => Verdict::accept_unchanged(),
            Err(e) => {
                let reason = e.to_string();
                warn(&format!("hmac-verify: rejected: {reason}"));
                Verdict::reject(401, reason)
            }
        }
    }
}

export_plugin!(HmacVerify);
