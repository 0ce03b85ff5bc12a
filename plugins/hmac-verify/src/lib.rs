//! `hmac-verify`: accepts only triggers whose webhook signature is valid,
//! under the scheme the tenant's config names.
//!
//! Tenant config (`[tenants.config]`):
//!
//! | key               | meaning                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | `scheme`          | `github` (default), `stripe`, `standard-webhooks`, `shopify` or `slack` |
//! | `secret`          | required: the signing secret, as the provider shows it (`whsec_…` for Standard Webhooks) |
//! | `previous_secret` | optional: the previous secret, also accepted during a rotation (`secret_previous`, the older name, still works) |
//! | `tolerance_secs`  | timestamped schemes (`stripe`, `standard-webhooks`, `slack`): max distance between the signed timestamp and the arrival time, either direction; default 300, 0 disables the check |
//!
//! The schemes are the SDK's (`weir_plugin_sdk::signature`); time is the
//! trigger's arrival time, so a replay gets the verdict ingest got.
//!
//! A missing, malformed, stale or wrong signature is the sender's problem:
//! 401 with a reason saying which. An unknown `scheme` is refused the same
//! way (401, the reason names the scheme and the known ones): this plugin
//! cannot verify anything then, and quarantining every unverifiable
//! request would let anyone fill the tenant's store. A missing `secret`, a
//! Standard Webhooks secret that is not base64 or a non-numeric
//! `tolerance_secs` is a plugin fault (logged, then a panic), as before:
//! the trigger is quarantined (or answered 503 with
//! `on_plugin_error = "reject"`) until the configuration is fixed.
//!
//! Valid triggers are accepted unchanged (no body copy).

use weir_plugin_sdk::signature::{DEFAULT_TOLERANCE_SECS, Scheme, SignatureError};
use weir_plugin_sdk::{Plugin, Trigger, Verdict, config, error, export_plugin, fault, info, warn};

/// The status of every refusal: the request could not be authenticated.
const UNAUTHORIZED: u16 = 401;

/// A config value, `None` when unset or blank.
fn setting(key: &str) -> Option<String> {
    config(key).filter(|v| !v.trim().is_empty())
}

fn tolerance_secs() -> u64 {
    match setting("tolerance_secs") {
        None => DEFAULT_TOLERANCE_SECS,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            fault("hmac-verify: config `tolerance_secs` must be a whole number of seconds")
        }),
    }
}

/// The HMAC key of config `key`; `None` when unset, a fault when the scheme
/// cannot use it.
fn key(scheme: Scheme, key: &str) -> Option<Vec<u8>> {
    let secret = setting(key)?;
    Some(scheme.key(&secret).unwrap_or_else(|e| {
        fault(&format!(
            "hmac-verify: config `{key}` is not a {scheme} secret: {e}"
        ))
    }))
}

fn verify(scheme: Scheme, key: &[u8], trigger: &Trigger) -> Result<usize, SignatureError> {
    // Only the timestamped schemes read the tolerance (one host call less
    // per trigger for the others).
    let tolerance_secs = if scheme.is_timestamped() {
        tolerance_secs()
    } else {
        0
    };
    scheme.verify_trigger(&[key], trigger, tolerance_secs)
}

struct HmacVerify;

impl Plugin for HmacVerify {
    fn handle(trigger: Trigger) -> Verdict {
        let scheme: Scheme = match setting("scheme").as_deref().unwrap_or("github").parse() {
            Ok(scheme) => scheme,
            Err(unknown) => {
                let reason = format!("hmac-verify: cannot verify the request: {unknown}");
                error(&reason);
                return Verdict::reject(UNAUTHORIZED, reason);
            }
        };
        let current = key(scheme, "secret")
            .unwrap_or_else(|| fault("hmac-verify: tenant config key `secret` is not set"));
        let mut result = verify(scheme, &current, &trigger);
        // The previous secret is read only when the current one did not
        // match: a rotation costs the hot path nothing.
        if result == Err(SignatureError::Mismatch)
            && let Some(previous) =
                key(scheme, "previous_secret").or_else(|| key(scheme, "secret_previous"))
        {
            result = verify(scheme, &previous, &trigger);
            if result.is_ok() {
                info(
                    "hmac-verify: signature matched `previous_secret`; finish the rotation at the sender",
                );
            }
        }
        match result {
            Ok(_) => Verdict::accept_unchanged(),
            Err(e) => {
                let reason = e.to_string();
                warn(&format!(
                    "hmac-verify: rejected ({scheme}, {}): {reason}",
                    e.kind()
                ));
                Verdict::reject(UNAUTHORIZED, reason)
            }
        }
    }
}

export_plugin!(HmacVerify);
