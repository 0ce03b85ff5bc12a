//! Plugins once for the whole fleet: `plugins.<tenant>` in the control KV
//! bucket names a component (by sha256) in the plugins Object Store; every
//! PoP follows those keys (`watch.rs`), fetches the component, verifies its
//! size and sha256, and activates it through the plugin host's own path
//! (the upload checks, the compile child and artifact cache, one Arc swap).
//! `publish.rs` is the other side: what `weir plugin upload/rollback
//! --fleet` and the admin API's fleet routes write.
//!
//! Offline is normal: what this PoP took is persisted in the control file
//! (`fleet_plugins`, with the last revision taken into account) and the
//! activated version is the host's active one, so a restart without NATS
//! serves the same plugins and the watcher later resumes after that revision.
//!
//! Anything refused (bad key or value, missing or corrupted object, a
//! component that fails the checks or does not compile) leaves the previous
//! version running and is reported once: a log line, a metric
//! (`weir_fleet_plugin_rejected_total{tenant,reason}`) and
//! [`FleetPluginsStatus`].

mod publish;
pub(super) mod value;
mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use publish::{PublishError, Published, publish_rollback, publish_upload};
pub use value::{KEY_PREFIX, Pointer, Refused, check_sha256, key_of, tenant_of};

use super::Fleet;
use crate::plugin::{PluginHost, UploadError, blocking};
use crate::shutdown::{Shutdown, Tasks};
use crate::store::{ControlFile, StoreError};
use crate::telemetry::Metrics;

/// How a tenant stands with its fleet plugin on this PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetPluginState {
    /// The wanted component runs here.
    Active,
    /// The wanted component was refused here; `active_sha256` (if any) still runs.
    Rejected,
    /// This PoP has no such tenant (yet): the component is kept and applied
    /// when the tenant appears ([`FleetPlugins::apply_pending`]).
    UnknownTenant,
}

/// A refusal, as status and heartbeats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The refused component, when the value named a valid one.
    pub sha256: Option<String>,
    /// A stable word: `sha256_mismatch`, `compile_failed`, `invalid_value`, ...
    pub reason: String,
    pub detail: String,
    /// The control-bucket revision of the refused value.
    pub revision: u64,
    pub at_ms: u64,
}

/// One tenant's fleet plugin on this PoP (also its persisted record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantFleetPlugin {
    /// What the fleet asks for (the key's sha256; `None` when the key's value was unusable).
    pub wanted_sha256: Option<String>,
    /// The fleet's component running here now. It differs from
    /// `wanted_sha256` while the wanted one is refused or its tenant unknown.
    pub active_sha256: Option<String>,
    pub state: FleetPluginState,
    /// The control-bucket revision of the key's value this record follows.
    pub revision: u64,
    pub last_rejected: Option<Rejection>,
}

/// What this PoP holds of the fleet's plugins: [`FleetPlugins::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPluginsStatus {
    /// The last control-bucket revision taken into account.
    pub revision: u64,
    /// True while the watcher follows the bucket (false while NATS is
    /// unreachable: this PoP then serves what it last took).
    pub following: bool,
    /// Why the watcher is not following, when it is not.
    pub last_error: Option<String>,
    pub tenants: BTreeMap<String, TenantFleetPlugin>,
    /// `plugins.*` keys that name no valid tenant (since this process started).
    pub invalid_keys: BTreeMap<String, Rejection>,
}

/// Failed to take a change; nothing was applied half-way.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The change is refused for good (until the key changes): reported.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Worth retrying (NATS unreachable, the store busy, a compile slot taken).
    #[error("{0}")]
    Transient(String),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Transient(format!("the control file: {e}"))
    }
}

impl From<UploadError> for ApplyError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::CompileBusy(_) | UploadError::CompilerUnavailable(_) | UploadError::Store(_) => {
                ApplyError::Transient(e.to_string())
            }
            other => ApplyError::Refused(Refused::Upload(other)),
        }
    }
}

/// Most invalid keys remembered in status (the oldest are forgotten).
const MAX_INVALID_KEYS: usize = 32;

/// This PoP's side of fleet plugins: the owner of what was taken from the
/// control bucket. Cheap to share (`Arc`).
pub struct FleetPlugins {
    fleet: Fleet,
    host: Arc<PluginHost>,
    repo: Arc<ControlFile>,
    metrics: Arc<Metrics>,
    max_component_bytes: u64,
    status: Mutex<FleetPluginsStatus>,
    /// One change at a time: the watcher and `apply_pending` never interleave.
    applying: tokio::sync::Mutex<()>,
}

impl FleetPlugins {
    /// Loads what was persisted (no NATS needed), applies kept components
    /// whose tenant now exists, and starts following the control bucket in
    /// the background.
    pub async fn start(
        fleet: Fleet,
        host: Arc<PluginHost>,
        repo: Arc<ControlFile>,
        metrics: Arc<Metrics>,
        max_component_bytes: u64,
        tasks: &Tasks,
        shutdown: Shutdown,
    ) -> Result<Arc<FleetPlugins>, StoreError> {
        let r = repo.clone();
        let (revision, records) = blocking(move || r.fleet_plugins()).await?;
        let mut status = FleetPluginsStatus { revision, ..Default::default() };
        for (tenant, bytes) in records {
            match serde_json::from_slice::<TenantFleetPlugin>(&bytes) {
                Ok(record) => {
                    status.tenants.insert(tenant, record);
                }
                // Weir wrote it: only a damaged file gets here. The next change to the key rewrites it.
                Err(e) => tracing::warn!(tenant, error = %e, "unreadable fleet plugin record in the control file; ignored"),
            }
        }
        let fp = Arc::new(FleetPlugins {
            fleet,
            host,
            repo,
            metrics,
            max_component_bytes,
            status: Mutex::new(status),
            applying: tokio::sync::Mutex::new(()),
        });
        let waiting: Vec<String> =
            fp.status().tenants.iter().filter(|(_, r)| r.state == FleetPluginState::UnknownTenant).map(|(t, _)| t.clone()).collect();
        for tenant in waiting {
            fp.apply_pending(&tenant).await;
        }
        let watcher = fp.clone();
        tasks.spawn("fleet plugin watcher", async move { watch::run(watcher, shutdown).await });
        Ok(fp)
    }

    /// A copy of what this PoP holds (cheap: a few small maps). For the
    /// heartbeat, the admin API and tests.
    pub fn status(&self) -> FleetPluginsStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    fn revision(&self) -> u64 {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).revision
    }

    fn record(&self, tenant: &str) -> Option<TenantFleetPlugin> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).tenants.get(tenant).cloned()
    }

    fn set_following(&self, following: bool, error: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.following = following;
        s.last_error = error;
    }

    /// Call when `tenant` appears on this PoP (the tenant registry does):
    /// a fleet plugin kept for it is checked, compiled and activated now,
    /// from the local copy (no NATS needed). Does nothing otherwise.
    pub async fn apply_pending(&self, tenant: &str) {
        let _one = self.applying.lock().await;
        let Some(record) = self.record(tenant) else { return };
        let (FleetPluginState::UnknownTenant, Some(sha)) = (record.state, record.wanted_sha256.clone()) else { return };
        if !self.host.knows_tenant(tenant) {
            return;
        }
        let r = self.repo.clone();
        let s = sha.clone();
        let bytes = match blocking(move || r.component(&s)).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::warn!(tenant, sha256 = %sha, "the kept fleet plugin is missing from the control file; waiting for the key to change");
                return;
            }
            Err(e) => {
                tracing::warn!(tenant, error = %e, "cannot read the kept fleet plugin; retried when the tenant appears again");
                return;
            }
        };
        let pointer = Pointer { sha256: sha, size: bytes.len() as u64, uploaded_at_ms: 0, by: String::new() };
        let revision = self.revision();
        if let Err(e) = self.activate(tenant, &pointer, record.revision, bytes, revision).await {
            tracing::warn!(tenant, error = %e, "the kept fleet plugin could not be applied now that its tenant exists");
        }
    }

    /// Takes `plugins.<tenant>` = `value` (revision `revision`). Checks
    /// everything, fetches and verifies the component unless this PoP keeps
    /// a copy, then activates it.
    async fn put(&self, objects: &watch::Objects, tenant: &str, value: &[u8], revision: u64) -> Result<(), ApplyError> {
        let previous = self.record(tenant);
        if let Some(p) = &previous
            && p.revision == revision
        {
            // Delivered again (a resumed watch): already taken, refusal and all.
            return Ok(());
        }
        let pointer = match value::parse(value, self.max_component_bytes) {
            Ok(p) => p,
            Err(refused) => return self.refuse(tenant, None, revision, refused).await,
        };
        if let Some(p) = &previous
            && p.active_sha256.as_deref() == Some(pointer.sha256.as_str())
            && self.host.active_sha256(tenant).as_deref() == Some(pointer.sha256.as_str())
        {
            let record = TenantFleetPlugin { wanted_sha256: Some(pointer.sha256.clone()), revision, last_rejected: None, ..p.clone() };
            return self.save(tenant, Some(record), revision).await;
        }
        let bytes = match self.local_copy(&pointer).await? {
            Some(b) => b,
            None => match objects.fetch(&pointer, self.max_component_bytes).await {
                Ok(b) => b,
                Err(ApplyError::Refused(r)) => return self.refuse(tenant, Some(&pointer.sha256), revision, r).await,
                Err(e) => return Err(e),
            },
        };
        self.activate(tenant, &pointer, revision, bytes, revision).await
    }

    /// Verified bytes this PoP already has for `pointer` (a rollback to a
    /// version it ran, a kept component), if any.
    async fn local_copy(&self, pointer: &Pointer) -> Result<Option<Vec<u8>>, ApplyError> {
        let (r, s) = (self.repo.clone(), pointer.sha256.clone());
        let Some(bytes) = blocking(move || r.component(&s)).await? else { return Ok(None) };
        // Content-addressed, but checked anyway: a local copy is trusted no more than the bucket.
        Ok(verify(pointer, &bytes).is_ok().then_some(bytes))
    }

    /// Activates verified `bytes` for `tenant`, or keeps them for a tenant
    /// this PoP does not know; records the outcome with `global` as the
    /// revision taken into account.
    async fn activate(&self, tenant: &str, pointer: &Pointer, revision: u64, bytes: Vec<u8>, global: u64) -> Result<(), ApplyError> {
        let previous = self.record(tenant);
        let active = previous.as_ref().and_then(|p| p.active_sha256.clone());
        if !self.host.knows_tenant(tenant) {
            let (r, s, b) = (self.repo.clone(), pointer.sha256.clone(), bytes);
            blocking(move || r.put_component(&s, &b)).await?;
            if previous.as_ref().is_none_or(|p| p.state != FleetPluginState::UnknownTenant) {
                tracing::warn!(tenant, sha256 = %pointer.sha256, revision,
                    "fleet plugin for a tenant this PoP does not know: kept, and applied when the tenant appears");
            }
            let record = TenantFleetPlugin {
                wanted_sha256: Some(pointer.sha256.clone()),
                active_sha256: active,
                state: FleetPluginState::UnknownTenant,
                revision,
                last_rejected: None,
            };
            return self.save(tenant, Some(record), global).await;
        }
        match self.host.activate_fleet(tenant, bytes).await {
            Ok((version, sha256)) => {
                tracing::info!(tenant, version, sha256 = %sha256, revision, "fleet plugin active");
                self.metrics.fleet_update("plugin", "applied");
                self.fleet.rejections.clear(&value::key_of(tenant));
                let record = TenantFleetPlugin {
                    wanted_sha256: Some(sha256.clone()),
                    active_sha256: Some(sha256),
                    state: FleetPluginState::Active,
                    revision,
                    last_rejected: None,
                };
                self.save(tenant, Some(record), global).await
            }
            Err(e) => match ApplyError::from(e) {
                ApplyError::Refused(r) => self.refuse(tenant, Some(&pointer.sha256), revision, r).await,
                transient => Err(transient),
            },
        }
    }

    /// `plugins.<tenant>` was deleted or purged: the tenant goes back to its
    /// local plugin, or none.
    async fn delete(&self, tenant: &str, revision: u64) -> Result<(), ApplyError> {
        let Some(previous) = self.record(tenant) else {
            return self.save_revision(revision).await;
        };
        if let Some(sha) = &previous.active_sha256
            && self.host.knows_tenant(tenant)
        {
            self.host.deactivate_fleet(tenant, sha).await?;
        }
        tracing::info!(tenant, revision, "fleet plugin removed");
        self.fleet.rejections.clear(&value::key_of(tenant));
        self.save(tenant, None, revision).await
    }

    /// Reports a refusal once (log, metric, status) and records it; the
    /// previous version keeps running.
    async fn refuse(&self, tenant: &str, sha256: Option<&str>, revision: u64, refused: Refused) -> Result<(), ApplyError> {
        let reason = refused.reason();
        tracing::warn!(tenant, sha256, revision, reason, error = %refused, "fleet plugin refused; this PoP keeps its previous version");
        self.metrics.fleet_plugin_rejected(tenant, reason);
        self.metrics.fleet_update("plugin", "rejected");
        self.fleet.rejections.reject(&value::key_of(tenant), revision, refused.to_string());
        let previous = self.record(tenant);
        let rejection =
            Rejection { sha256: sha256.map(str::to_string), reason: reason.into(), detail: refused.to_string(), revision, at_ms: now_ms() };
        let record = TenantFleetPlugin {
            wanted_sha256: sha256.map(str::to_string),
            active_sha256: previous.as_ref().and_then(|p| p.active_sha256.clone()),
            state: FleetPluginState::Rejected,
            revision,
            last_rejected: Some(rejection),
        };
        self.save(tenant, Some(record), revision).await
    }

    /// A `plugins.*` key that names no tenant: reported, and passed over.
    async fn invalid_key(&self, key: &str, revision: u64, refused: Refused) -> Result<(), ApplyError> {
        tracing::warn!(key, revision, error = %refused, "fleet control key refused");
        self.metrics.fleet_plugin_rejected("", refused.reason());
        self.metrics.fleet_update("plugin", "rejected");
        self.fleet.rejections.reject(key, revision, refused.to_string());
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if s.invalid_keys.len() >= MAX_INVALID_KEYS
                && let Some(oldest) = s.invalid_keys.iter().min_by_key(|(_, r)| r.revision).map(|(k, _)| k.clone())
            {
                s.invalid_keys.remove(&oldest);
            }
            let rejection =
                Rejection { sha256: None, reason: refused.reason().into(), detail: refused.to_string(), revision, at_ms: now_ms() };
            s.invalid_keys.insert(key.chars().take(128).collect(), rejection);
        }
        self.save_revision(revision).await
    }

    /// Persists a tenant's record (or its removal) with the revision, then publishes it to status.
    async fn save(&self, tenant: &str, record: Option<TenantFleetPlugin>, revision: u64) -> Result<(), ApplyError> {
        let revision = revision.max(self.revision());
        let bytes = record.as_ref().map(serde_json::to_vec).transpose().map_err(|e| ApplyError::Transient(e.to_string()))?;
        let (r, t) = (self.repo.clone(), tenant.to_string());
        blocking(move || r.put_fleet_plugin(&t, bytes.as_deref(), revision)).await?;
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.revision = revision;
        match record {
            Some(record) => s.tenants.insert(tenant.to_string(), record),
            None => s.tenants.remove(tenant),
        };
        Ok(())
    }

    /// Persists that everything up to `revision` was taken into account.
    async fn save_revision(&self, revision: u64) -> Result<(), ApplyError> {
        if revision <= self.revision() {
            return Ok(());
        }
        self.force_revision(revision).await
    }

    /// Sets the revision, also backwards (a control bucket that was recreated starts again at 1).
    async fn force_revision(&self, revision: u64) -> Result<(), ApplyError> {
        let r = self.repo.clone();
        blocking(move || r.put_fleet_revision(revision)).await?;
        self.status.lock().unwrap_or_else(|e| e.into_inner()).revision = revision;
        Ok(())
    }
}

/// Checks fetched (or kept) bytes against the pointer that named them.
fn verify(pointer: &Pointer, bytes: &[u8]) -> Result<(), Refused> {
    if bytes.len() as u64 != pointer.size {
        return Err(Refused::SizeMismatch { sha256: pointer.sha256.clone(), expected: pointer.size, got: bytes.len() as u64 });
    }
    let got = crate::plugin::sha256_hex(bytes);
    if got != pointer.sha256 {
        return Err(Refused::Sha256Mismatch { expected: pointer.sha256.clone(), got });
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
