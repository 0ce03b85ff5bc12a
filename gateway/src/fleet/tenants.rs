//! Fleet-wide tenants and pauses: applies the control bucket's
//! `tenants.<id>` and `paused.<id>` keys to this PoP, in revision order.
//!
//! What it applied is kept in the control file (`fleet_values`, and its
//! cursor in `fleet_cursors`) in the same transaction as the cursor moves, so
//! a PoP that restarts while NATS is down serves the same tenants, and on
//! reconnect it resumes right after the last revision it applied.
//! Everything read from NATS is untrusted: a bad key or value is refused,
//! logged, counted and listed in `/v1/status`, and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use futures::StreamExt;
use serde::Deserialize;

use super::{Fleet, Rejections};
use crate::forward::Forwarder;
use crate::shutdown::Shutdown;
use crate::store::{ControlFile, StoreError};
use crate::tenants::{Applied, TenantSettings, Tenants};

/// This watcher's name in `fleet_cursors`.
const WATCHER: &str = "tenants";
const TENANTS: &str = "tenants.";
const PAUSED: &str = "paused.";
/// Largest value accepted for one key (settings are small; a config map is capped at 64 KiB).
const MAX_VALUE_BYTES: usize = 128 * 1024;

/// `paused.<tenant>`'s value.
#[derive(Debug, Deserialize)]
struct Pause {
    paused: bool,
}

/// Loads the fleet tenants this PoP last applied into `tenants`, before
/// anything serves: a start while NATS is down serves them all the same.
pub fn restore(repo: &ControlFile, tenants: &Tenants) -> Result<usize, StoreError> {
    let mut n = 0;
    for (key, value) in repo.fleet_values(TENANTS)? {
        let id = &key[TENANTS.len()..];
        match serde_json::from_slice::<TenantSettings>(&value)
            .map_err(|e| e.to_string())
            .and_then(|s| tenants.upsert_fleet(id, &s).map_err(|e| e.to_string()))
        {
            Ok(_) => n += 1,
            Err(e) => tracing::warn!(tenant = %id, error = %e, "a fleet tenant kept in the control file no longer applies; it is left out"),
        }
    }
    Ok(n)
}

/// The task applying tenant and pause keys.
pub struct TenantSync {
    pub fleet: Fleet,
    pub tenants: Arc<Tenants>,
    pub forwarder: Forwarder,
    pub repo: Arc<ControlFile>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub rejections: Rejections,
}

impl TenantSync {
    /// Watches until shutdown; a lost connection or watch is started again
    /// after a jittered backoff, from the revision after the last applied.
    pub async fn run(self, mut shutdown: Shutdown) {
        let cap = Duration::from_millis(self.fleet.config.reconnect_max_ms);
        let mut wait = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                r = self.watch() => match r {
                    Ok(()) => wait = Duration::from_millis(100),
                    Err(e) => tracing::debug!(error = %e, "fleet tenant watch interrupted; resuming after a pause"),
                },
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(super::jitter(wait)) => {}
            }
            wait = (wait * 2).min(cap);
        }
    }

    /// One watch, from the revision after the cursor, until it fails or ends.
    async fn watch(&self) -> Result<(), String> {
        let kv = self.fleet.control_bucket().await?;
        let repo = self.repo.clone();
        let cursor = blocking(move || repo.fleet_cursor(WATCHER)).await?.unwrap_or(0);
        let mut entries = kv.watch_all_from_revision(cursor + 1).await.map_err(|e| format!("cannot watch the control bucket: {e}"))?;
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| format!("control bucket watch failed: {e}"))?;
            self.apply(entry).await?;
        }
        Ok(())
    }

    /// Applies one entry and records it (or only moves the cursor past a
    /// refused one). Fails only when the control file cannot be written: the
    /// watch then restarts from the same revision.
    async fn apply(&self, entry: Entry) -> Result<(), String> {
        let (key, revision) = (entry.key.clone(), entry.revision);
        let (kind, result) = if let Some(id) = key.strip_prefix(TENANTS) {
            ("tenant", self.apply_tenant(id, &entry))
        } else if let Some(id) = key.strip_prefix(PAUSED) {
            ("pause", self.apply_pause(id, &entry).await)
        } else {
            // Another watcher's key (plugins.*): only the cursor moves.
            let repo = self.repo.clone();
            return blocking(move || repo.set_fleet_cursor(WATCHER, revision)).await;
        };
        let repo = self.repo.clone();
        match result {
            Ok(kept) => {
                self.metrics.fleet_update(kind, "applied");
                self.rejections.clear(&key);
                let k = key.clone();
                blocking(move || repo.apply_fleet_value(WATCHER, revision, &k, kept.as_deref())).await
            }
            Err(reason) => {
                self.metrics.fleet_update(kind, "rejected");
                tracing::warn!(key = %key, revision, reason = %reason, "fleet control value refused; this PoP keeps its previous state");
                self.rejections.reject(&key, revision, reason);
                blocking(move || repo.set_fleet_cursor(WATCHER, revision)).await
            }
        }
    }

    /// A tenant's settings put or removed. Returns what to keep locally.
    fn apply_tenant(&self, id: &str, entry: &Entry) -> Result<Option<Vec<u8>>, String> {
        if entry.operation != Operation::Put {
            let applied = self.tenants.remove_fleet(id).map_err(|e| e.to_string())?;
            if applied == Applied::Removed {
                tracing::info!(tenant = %id, "fleet tenant removed; its stored triggers are still forwarded");
            }
            return Ok(None);
        }
        let settings: TenantSettings = parse(&entry.value)?;
        let applied = self.tenants.upsert_fleet(id, &settings).map_err(|e| e.to_string())?;
        if applied != Applied::Unchanged {
            tracing::info!(tenant = %id, change = ?applied, "fleet tenant applied");
        }
        Ok(Some(entry.value.to_vec()))
    }

    /// A fleet-wide pause or resume: the same durable pause an operator sets
    /// with `weir pause` (the last one, local or fleet, wins).
    async fn apply_pause(&self, id: &str, entry: &Entry) -> Result<Option<Vec<u8>>, String> {
        let paused = match entry.operation {
            Operation::Put => parse::<Pause>(&entry.value)?.paused,
            Operation::Delete | Operation::Purge => false,
        };
        let r = if paused { self.forwarder.pause(id).await } else { self.forwarder.resume(id).await };
        r.map_err(|e| e.to_string())?;
        tracing::info!(tenant = %id, paused, "fleet-wide pause applied");
        // The pause itself is kept by the forwarder; nothing else to keep.
        Ok(None)
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("value of {} bytes is larger than the {MAX_VALUE_BYTES} accepted", value.len()));
    }
    serde_json::from_slice(value).map_err(|e| format!("value is not valid JSON for this key: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| format!("control file: {e}")),
        Err(e) => Err(format!("control file task failed: {e}")),
    }
}
