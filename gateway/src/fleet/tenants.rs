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

use serde::Deserialize;

use super::control::{Batch, Change, Follower};
use super::plugins::FleetPlugins;
use super::{Fleet, Rejections};
use crate::forward::Forwarder;
use crate::shutdown::Shutdown;
use crate::store::{ControlFile, StoreError};
use crate::tenants::{Applied, Origin, TenantSettings, Tenants};

/// This watcher's name in `fleet_cursors`.
const WATCHER: &str = "tenants";
const TENANTS: &str = "tenants.";
const PAUSED: &str = "paused.";
/// Largest value accepted for one key (settings are small; a config map is capped at 64 KiB).
const MAX_VALUE_BYTES: usize = 128 * 1024;

/// `paused.<tenant>`'s value.
#[derive(Debug, Deserialize)]
pub(super) struct Pause {
    pub(super) paused: bool,
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
    /// Told when a tenant appears, so a fleet plugin kept for it activates.
    pub fleet_plugins: Option<Arc<FleetPlugins>>,
}

impl TenantSync {
    /// Follows the control bucket until shutdown; a lost connection or watch
    /// is started again after a jittered backoff, from the revision after
    /// the last applied.
    pub async fn run(self, mut shutdown: Shutdown) {
        let cap = Duration::from_millis(self.fleet.config.reconnect_max_ms);
        let mut wait = Duration::from_millis(100);
        let mut last_error: Option<String> = None;
        loop {
            let error = tokio::select! {
                _ = shutdown.wait() => return,
                e = self.follow() => e,
            };
            // One line per distinct cause, not one per retry while NATS is down.
            if self.fleet.connected() && last_error.as_deref() != Some(error.as_str()) {
                tracing::warn!(error = %error, "not following the fleet's tenants; this PoP keeps what it applied, and retries");
            }
            last_error = Some(error);
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(super::jitter(wait)) => {}
            }
            wait = (wait * 2).min(cap);
        }
    }

    /// One session, from the revision after the cursor, until it fails.
    async fn follow(&self) -> String {
        let repo = self.repo.clone();
        let cursor = match blocking(move || repo.fleet_cursor(WATCHER)).await {
            Ok(c) => c.unwrap_or(0),
            Err(e) => return e,
        };
        // Every key: `tenants.*` and `paused.*` are this watcher's; the others only move its cursor.
        let mut follower = match Follower::open(&self.fleet, "", cursor, "tenants").await {
            Ok(f) => f,
            Err(e) => return e.to_string(),
        };
        loop {
            let batch = match follower.next().await {
                Ok(b) => b,
                Err(e) => return e,
            };
            if let Err(e) = self.settle(batch).await {
                return e;
            }
        }
    }

    /// Applies a batch in revision order. A full re-read (the bucket lost
    /// the history after this PoP's cursor, or was recreated) also removes
    /// the fleet tenants it no longer names.
    async fn settle(&self, batch: Batch) -> Result<(), String> {
        let Batch { changes, resync } = batch;
        if let Some(last) = resync {
            let named: std::collections::HashSet<&str> = changes.iter().filter_map(|c| c.key.strip_prefix(TENANTS)).collect();
            let gone: Vec<String> = self
                .tenants
                .snapshot()
                .values()
                .filter(|t| t.origin == Origin::Fleet && !named.contains(t.id.as_str()))
                .map(|t| t.id.clone())
                .collect();
            for id in gone {
                self.apply(Change { key: format!("{TENANTS}{id}"), revision: last, value: None }).await?;
            }
        }
        let newest = changes.last().map_or(0, |c| c.revision);
        for change in changes {
            self.apply(change).await?;
        }
        if let Some(last) = resync {
            let repo = self.repo.clone();
            blocking(move || repo.set_fleet_cursor(WATCHER, last.max(newest))).await?;
        }
        Ok(())
    }

    /// Applies one change and records it (or only moves the cursor past a
    /// refused one). Fails only when the control file cannot be written: the
    /// session then restarts from the same revision.
    async fn apply(&self, change: Change) -> Result<(), String> {
        let (key, revision) = (change.key.clone(), change.revision);
        let (kind, result) = if let Some(id) = key.strip_prefix(TENANTS) {
            ("tenant", self.apply_tenant(id, &change).await)
        } else if let Some(id) = key.strip_prefix(PAUSED) {
            ("pause", self.apply_pause(id, &change).await)
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
    async fn apply_tenant(&self, id: &str, change: &Change) -> Result<Option<Vec<u8>>, String> {
        let Some(value) = &change.value else {
            let applied = self.tenants.remove_fleet(id).map_err(|e| e.to_string())?;
            if applied == Applied::Removed {
                tracing::info!(tenant = %id, "fleet tenant removed; its stored triggers are still forwarded");
            }
            return Ok(None);
        };
        let settings: TenantSettings = parse(value)?;
        let applied = self.tenants.upsert_fleet(id, &settings).map_err(|e| e.to_string())?;
        if applied != Applied::Unchanged {
            tracing::info!(tenant = %id, change = ?applied, "fleet tenant applied");
        }
        if let (Applied::Added, Some(fp)) = (applied, &self.fleet_plugins) {
            fp.apply_pending(id).await;
        }
        Ok(Some(value.to_vec()))
    }

    /// A fleet-wide pause or resume: the same durable pause an operator sets
    /// with `weir pause` (the last one, local or fleet, wins).
    async fn apply_pause(&self, id: &str, change: &Change) -> Result<Option<Vec<u8>>, String> {
        let paused = match &change.value {
            Some(v) => parse::<Pause>(v)?.paused,
            None => false,
        };
        let r = if paused { self.forwarder.pause(id).await } else { self.forwarder.resume(id).await };
        r.map_err(|e| e.to_string())?;
        tracing::info!(tenant = %id, paused, "fleet-wide pause applied");
        // The pause itself is kept by the forwarder; nothing else to keep.
        Ok(None)
    }
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, String> {
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
