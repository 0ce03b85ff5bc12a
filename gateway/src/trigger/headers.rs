//! Which request headers are stored with a trigger, and the one rule for an
//! idempotency key (a sender's header and a plugin's verdict alike).
//!
//! The rule (documented in docs/api.md): every request header is stored,
//! names lower-cased, in arrival order, **except**
//! - credentials: `authorization`, `proxy-authorization`, `cookie`;
//! - hop-by-hop and framing headers that describe this connection, not the
//!   trigger: `connection`, `keep-alive`, `te`, `trailer`, `transfer-encoding`,
//!   `upgrade`, `proxy-connection`, `content-length`, `host`, `expect`.
//!
//! Webhook providers each name their signature headers differently
//! (`x-hub-signature-256`, `stripe-signature`, `svix-signature`, ...), so an
//! allow list would silently drop the one a plugin or the upstream needs;
//! a deny list of what must never be stored or forwarded is the safer rule.

use http::HeaderMap;

pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// Why a string is not an idempotency key; `Display` completes "the key ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {IDEMPOTENCY_KEY_MAX} bytes")]
    TooLong,
    #[error("is not visible ASCII (no spaces, tabs or control characters)")]
    NotVisible,
}

/// An idempotency key is 1 to `IDEMPOTENCY_KEY_MAX` visible ASCII characters
/// (`!`..=`~`: no space, no tab). One rule for the sender's `Idempotency-Key`
/// and a plugin's `idempotency-key`, so dedupe and delivery see one format.
pub fn check_idempotency_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > IDEMPOTENCY_KEY_MAX {
        return Err(KeyError::TooLong);
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::NotVisible);
    }
    Ok(())
}

/// The sender's `Idempotency-Key` header as ingest takes it: absent, or a
/// valid key (surrounding whitespace is HTTP framing, not part of the key).
pub fn idempotency_key_of(headers: &HeaderMap) -> Result<Option<String>, KeyError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().map_err(|_| KeyError::NotVisible)?.trim();
    check_idempotency_key(key)?;
    Ok(Some(key.to_string()))
}

const DENIED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "content-length",
    "host",
    "expect",
];

pub fn is_stored_header(name: &str) -> bool {
    !DENIED.contains(&name)
}

/// The headers to store, as (lower-case name, value). Values that are not
/// valid UTF-8 are stored lossily (such headers carry no signatures).
pub fn stored(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| is_stored_header(name.as_str()))
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_signatures_and_drops_credentials() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-hub-signature-256", "sha256=ab".parse().unwrap());
        h.insert("stripe-signature", "t=1,v1=ab".parse().unwrap());
        h.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        h.insert("authorization", "Bearer x".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.insert("host", "example".parse().unwrap());
        let names: Vec<String> = stored(&h).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "x-hub-signature-256", "stripe-signature", "traceparent"]);
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(check_idempotency_key("order-42:v1"), Ok(()));
        assert_eq!(check_idempotency_key(&"k".repeat(IDEMPOTENCY_KEY_MAX)), Ok(()));
        assert_eq!(check_idempotency_key(""), Err(KeyError::Empty));
        assert_eq!(check_idempotency_key(&"k".repeat(IDEMPOTENCY_KEY_MAX + 1)), Err(KeyError::TooLong));
        for bad in ["a b", "a\tb", "caf\u{e9}", "a\u{7f}"] {
            assert_eq!(check_idempotency_key(bad), Err(KeyError::NotVisible), "{bad:?}");
        }
    }
}
