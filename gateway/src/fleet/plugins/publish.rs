//! Writing a tenant's fleet plugin: the component into the plugins Object
//! Store (named by its sha256), then `plugins.<tenant>` pointing at it.
//! Rollback points the key at an earlier component from the key's history.
//! Callers check and test-compile the component first (the CLI and the
//! admin API both do): nothing that fails to compile reaches NATS.

use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::value::{self, Pointer};
use crate::config::FleetConfig;
use crate::fleet::{FleetError, control};

/// What a publish set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub tenant: String,
    pub sha256: String,
    pub size: u64,
    /// The control-bucket revision of the new value.
    pub revision: u64,
    /// What the key pointed at before, if anything.
    pub previous_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("tenant id {0}")]
    InvalidTenant(String),
    #[error("{0}")]
    InvalidSha256(String),
    #[error(transparent)]
    Bucket(#[from] FleetError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("tenant {0} has no fleet plugin (plugins.{0} is not set)")]
    NoPlugin(String),
    #[error("the history of plugins.{0} holds no earlier component to roll back to; name one with --to SHA256")]
    NoPrevious(String),
    #[error("component {0} is not in the plugins bucket; upload it with `weir plugin upload --fleet`")]
    UnknownComponent(String),
    #[error("plugins.{0} changed while rolling back; look at it again and retry")]
    Conflict(String),
}

impl PublishError {
    /// HTTP status and code for the admin API.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            PublishError::InvalidTenant(_) | PublishError::InvalidSha256(_) => (400, "invalid_request"),
            PublishError::Bucket(_) | PublishError::Nats(_) => (503, "nats_unavailable"),
            PublishError::NoPlugin(_) => (404, "no_fleet_plugin"),
            PublishError::NoPrevious(_) => (409, "no_previous_version"),
            PublishError::UnknownComponent(_) => (404, "unknown_component"),
            PublishError::Conflict(_) => (409, "conflict"),
        }
    }
}

fn nats(e: impl std::fmt::Display) -> PublishError {
    PublishError::Nats(e.to_string())
}

fn check_tenant(tenant: &str) -> Result<(), PublishError> {
    crate::config::validate_label(tenant).map_err(PublishError::InvalidTenant)
}

/// Puts `bytes` into the plugins bucket (unless an intact copy is there)
/// and points `plugins.<tenant>` at it. `by` says who, for status and audit.
pub async fn publish_upload(
    js: &jetstream::Context,
    f: &FleetConfig,
    tenant: &str,
    bytes: &[u8],
    by: &str,
) -> Result<Published, PublishError> {
    check_tenant(tenant)?;
    let kv = control::control_bucket(js, f).await?;
    let objects = control::plugins_bucket(js, f).await?;
    let digest = Sha256::digest(bytes);
    let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // The bucket's own digest format: an intact copy is not written again,
    // and a damaged one (wrong digest or size) is replaced.
    let intact = format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(digest));
    let present = objects
        .info(sha256.as_str())
        .await
        .ok()
        .is_some_and(|i| !i.deleted && i.size == bytes.len() && i.digest.as_deref() == Some(intact.as_str()));
    if !present {
        objects.put(sha256.as_str(), &mut &bytes[..]).await.map_err(nats)?;
    }
    let previous = current(&kv, tenant).await?.map(|(p, _)| p.sha256);
    let pointer = Pointer { sha256: sha256.clone(), size: bytes.len() as u64, uploaded_at_ms: now_ms(), by: by.to_string() };
    let revision = put(&kv, tenant, &pointer, None).await?;
    Ok(Published { tenant: tenant.to_string(), sha256, size: pointer.size, revision, previous_sha256: previous })
}

/// Points `plugins.<tenant>` at `to`, or at the newest earlier component in
/// the key's history that differs from the current one. The key must not
/// have changed meanwhile (compare-and-set on its revision).
pub async fn publish_rollback(
    js: &jetstream::Context,
    f: &FleetConfig,
    tenant: &str,
    to: Option<&str>,
    by: &str,
) -> Result<Published, PublishError> {
    check_tenant(tenant)?;
    if let Some(sha) = to {
        value::check_sha256(sha).map_err(PublishError::InvalidSha256)?;
    }
    let kv = control::control_bucket(js, f).await?;
    let objects = control::plugins_bucket(js, f).await?;
    let (now, revision) = current(&kv, tenant).await?.ok_or_else(|| PublishError::NoPlugin(tenant.to_string()))?;
    let target = match to {
        Some(sha) => {
            let info = objects.info(sha).await.map_err(|_| PublishError::UnknownComponent(sha.to_string()))?;
            if info.deleted {
                return Err(PublishError::UnknownComponent(sha.to_string()));
            }
            Pointer { sha256: sha.to_string(), size: info.size as u64, uploaded_at_ms: 0, by: String::new() }
        }
        None => previous(&kv, tenant, &now.sha256).await?.ok_or_else(|| PublishError::NoPrevious(tenant.to_string()))?,
    };
    let pointer = Pointer { uploaded_at_ms: now_ms(), by: by.to_string(), ..target };
    let revision = put(&kv, tenant, &pointer, Some(revision)).await?;
    Ok(Published { tenant: tenant.to_string(), sha256: pointer.sha256, size: pointer.size, revision, previous_sha256: Some(now.sha256) })
}

/// The key's current pointer and revision, if it has a usable value.
async fn current(kv: &kv::Store, tenant: &str) -> Result<Option<(Pointer, u64)>, PublishError> {
    let Some(entry) = kv.entry(value::key_of(tenant)).await.map_err(nats)? else { return Ok(None) };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    Ok(value::parse(&entry.value, u64::MAX).ok().map(|p| (p, entry.revision)))
}

/// The component before `now` in the key's history, read as a stack: an
/// upload of a new component pushes it; setting an earlier one (a rollback,
/// or uploading it again) goes back to it, dropping what came after; a
/// delete starts over. So rollbacks walk back one upload at a time.
async fn previous(kv: &kv::Store, tenant: &str, now: &str) -> Result<Option<Pointer>, PublishError> {
    let mut history = kv.history(value::key_of(tenant)).await.map_err(nats)?;
    let mut stack: Vec<Pointer> = Vec::new();
    while let Some(entry) = history.next().await {
        let entry = entry.map_err(nats)?;
        if entry.operation != kv::Operation::Put {
            stack.clear();
            continue;
        }
        if let Ok(p) = value::parse(&entry.value, u64::MAX) {
            push(&mut stack, p);
        }
    }
    Ok(below(&stack, now))
}

fn push(stack: &mut Vec<Pointer>, p: Pointer) {
    match stack.iter().position(|q| q.sha256 == p.sha256) {
        Some(i) => stack.truncate(i + 1),
        None => stack.push(p),
    }
}

/// The entry under `now`'s (the top, unless the key changed meanwhile).
fn below(stack: &[Pointer], now: &str) -> Option<Pointer> {
    let i = stack.iter().rposition(|p| p.sha256 == now)?;
    i.checked_sub(1).map(|j| stack[j].clone())
}

async fn put(kv: &kv::Store, tenant: &str, pointer: &Pointer, expect: Option<u64>) -> Result<u64, PublishError> {
    let key = value::key_of(tenant);
    let json = serde_json::to_vec(pointer).map_err(nats)?;
    match expect {
        None => kv.put(key, json.into()).await.map_err(nats),
        Some(revision) => kv.update(key, json.into(), revision).await.map_err(|e| match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => PublishError::Conflict(tenant.to_string()),
            _ => nats(e),
        }),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sha: char) -> Pointer {
        Pointer { sha256: sha.to_string().repeat(64), size: 1, uploaded_at_ms: 0, by: String::new() }
    }

    fn after(history: &str) -> Option<char> {
        let mut stack = Vec::new();
        for c in history.chars() {
            push(&mut stack, p(c));
        }
        let now = history.chars().last()?;
        below(&stack, &p(now).sha256).map(|q| q.sha256.chars().next().unwrap_or('?'))
    }

    #[test]
    fn rollbacks_walk_back_one_upload_at_a_time() {
        assert_eq!(after("a"), None);
        assert_eq!(after("ab"), Some('a'));
        assert_eq!(after("abc"), Some('b'));
        assert_eq!(after("abcb"), Some('a'), "after a rollback to b, the next goes to a");
        assert_eq!(after("abcba"), None, "nothing before the first");
        assert_eq!(after("abcbd"), Some('b'), "a new upload after a rollback");
        assert_eq!(after("abb"), Some('a'), "the same component twice is one step");
    }
}
