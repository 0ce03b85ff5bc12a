//! `plugins.<tenant>` in the control bucket: its key, its JSON value, and
//! the checks everything read from it goes through. It comes from NATS, so
//! it is treated like a request from the internet: bounded, parsed strictly,
//! every field checked, refused whole when any is wrong.

use serde::{Deserialize, Serialize};

use crate::plugin::UploadError;

/// Keys of the control bucket that name a tenant's fleet plugin.
pub const KEY_PREFIX: &str = "plugins.";
/// A pointer is a few fields; anything longer is not one.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest `by` kept (who uploaded: shown in status and the audit log).
const MAX_BY_BYTES: usize = 256;

/// The value of `plugins.<tenant>`: which component (by sha256, in the
/// plugins Object Store) is the tenant's plugin fleet-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub uploaded_at_ms: u64,
    #[serde(default)]
    pub by: String,
}

/// Why a fleet plugin was refused on this PoP. The previous version stays
/// active whatever the reason; `reason()` is the metric label and the
/// status code word.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("control key {key:?} does not name a tenant: {why}")]
    InvalidKey { key: String, why: String },
    #[error("the value is not a plugin pointer: {0}")]
    InvalidValue(String),
    #[error("the component is {size} bytes, over this PoP's limit of {limit} (plugins.max_component_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("object {0} is not in the plugins bucket")]
    ObjectMissing(String),
    #[error("object {sha256} holds {got} bytes, the key says {expected}")]
    SizeMismatch { sha256: String, expected: u64, got: u64 },
    #[error("object {expected} holds bytes whose sha256 is {got}: corrupted or substituted")]
    Sha256Mismatch { expected: String, got: String },
    #[error(transparent)]
    Upload(UploadError),
}

impl Refused {
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::InvalidKey { .. } => "invalid_key",
            Refused::InvalidValue(_) => "invalid_value",
            Refused::TooLarge { .. } => "component_too_large",
            Refused::ObjectMissing(_) => "object_missing",
            Refused::SizeMismatch { .. } => "size_mismatch",
            Refused::Sha256Mismatch { .. } => "sha256_mismatch",
            Refused::Upload(e) => e.status_and_code().1,
        }
    }
}

/// The key of a tenant's fleet plugin.
pub fn key_of(tenant: &str) -> String {
    format!("{KEY_PREFIX}{tenant}")
}

/// The tenant a key names, checked like a tenant id from the config.
pub fn tenant_of(key: &str) -> Result<&str, Refused> {
    let invalid = |why: String| Refused::InvalidKey { key: key.chars().take(128).collect(), why };
    let tenant = key.strip_prefix(KEY_PREFIX).ok_or_else(|| invalid(format!("it does not start with {KEY_PREFIX:?}")))?;
    crate::config::validate_label(tenant).map_err(invalid)?;
    Ok(tenant)
}

/// Parses and checks a pointer: size-bounded JSON, a lower-case sha256, a
/// size this PoP accepts.
pub fn parse(value: &[u8], max_component_bytes: u64) -> Result<Pointer, Refused> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Refused::InvalidValue(format!("{} bytes, over the {MAX_VALUE_BYTES} a pointer may take", value.len())));
    }
    let p: Pointer = serde_json::from_slice(value).map_err(|e| Refused::InvalidValue(format!("not the expected JSON ({e})")))?;
    check_sha256(&p.sha256).map_err(Refused::InvalidValue)?;
    if p.size == 0 {
        return Err(Refused::InvalidValue("size is 0".into()));
    }
    if p.size > max_component_bytes {
        return Err(Refused::TooLarge { size: p.size, limit: max_component_bytes });
    }
    if p.by.len() > MAX_BY_BYTES || p.by.chars().any(char::is_control) {
        return Err(Refused::InvalidValue(format!("`by` must be at most {MAX_BY_BYTES} bytes of printable text")));
    }
    Ok(p)
}

/// 64 lower-case hex digits: the only object names Weir reads.
pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("sha256 {:?} is not 64 lower-case hex digits", s.chars().take(80).collect::<String>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn keys_name_valid_tenants_only() {
        assert_eq!(tenant_of("plugins.acme").expect("valid"), "acme");
        assert_eq!(tenant_of("plugins.eu.acme").expect("dots are allowed in tenant ids"), "eu.acme");
        assert_eq!(key_of("acme"), "plugins.acme");
        for bad in ["plugins.", "tenants.acme", "plugins.a/b", "plugins.a=b", &format!("plugins.{}", "x".repeat(65))] {
            let e = tenant_of(bad).expect_err(bad);
            assert_eq!(e.reason(), "invalid_key", "{bad}");
        }
    }

    #[test]
    fn pointers_are_checked_field_by_field() {
        let ok = format!(r#"{{"sha256":"{SHA}","size":10,"uploaded_at_ms":1,"by":"cli:ops"}}"#);
        assert_eq!(parse(ok.as_bytes(), 100).expect("valid").size, 10);
        let minimal = format!(r#"{{"sha256":"{SHA}","size":10}}"#);
        assert!(parse(minimal.as_bytes(), 100).is_ok());
        let cases: Vec<(String, &str)> = vec![
            ("garbage".into(), "invalid_value"),
            ("[]".into(), "invalid_value"),
            (r#"{"sha256":"abc","size":10}"#.into(), "invalid_value"),
            (format!(r#"{{"sha256":"{}","size":10}}"#, SHA.to_uppercase()), "invalid_value"),
            (format!(r#"{{"sha256":"{SHA}","size":0}}"#), "invalid_value"),
            (format!(r#"{{"sha256":"{SHA}","size":-1}}"#), "invalid_value"),
            (format!(r#"{{"sha256":"{SHA}","size":101}}"#), "component_too_large"),
            (format!(r#"{{"sha256":"{SHA}","size":10,"by":"a\nb"}}"#), "invalid_value"),
            (format!(r#"{{"sha256":"{SHA}","size":10,"by":"{}"}}"#, "x".repeat(MAX_VALUE_BYTES)), "invalid_value"),
        ];
        for (value, reason) in cases {
            let e = parse(value.as_bytes(), 100).expect_err(&value);
            assert_eq!(e.reason(), reason, "{value}: {e}");
        }
    }
}
